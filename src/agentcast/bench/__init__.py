"""Client-scaling benchmark behind ``agentcast bench``, and the pieces ``bench/`` reuses.

Each server under test runs in its own spawned process with its publisher
thread; raw WebSocket receivers run in other processes on other CPUs and only
count frame headers, so the numbers are the server's, not the clients'.
"""
