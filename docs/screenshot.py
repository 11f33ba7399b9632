"""Take the picture of the live page that the README and docs/live-page.md show: a real
demo server streaming at an LLM's pace, headless Chromium in the dark scheme, two exchanges
typed into the page, and a third caught while its reply streams, then a screenshot.

    PYTHONPATH=src python docs/screenshot.py docs/page.png
"""

from __future__ import annotations

import functools
import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from agentcast.memgpt.app import AgentServer
from agentcast.memgpt.backends import DemoAgentServer

EXCHANGES = ("hello", "what is the weather like on the moon?")
STREAMING = "tell me more about the far side of the moon"
DONE_RUNS = (By.CSS_SELECTOR, ".run.done")
HALF_WAY = "return document.querySelector('.entry.kind-text.streaming')?.textContent.length > 30"


def main(output: str) -> None:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1000,1200", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.execute_cdp_cmd(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
        )
        demo = functools.partial(DemoAgentServer, word_delay=0.05)
        with AgentServer(demo, port=0) as server:
            driver.get(f"http://127.0.0.1:{server.port}/?agent=demo")
            wait = WebDriverWait(driver, 20, poll_frequency=0.02)
            field = driver.find_element(By.ID, "message")
            for done, text in enumerate(EXCHANGES, 1):
                wait.until(lambda _: field.is_enabled())
                field.send_keys(text, Keys.ENTER)
                wait.until(lambda d, n=done: len(d.find_elements(*DONE_RUNS)) == n)
            field.send_keys(STREAMING, Keys.ENTER)
            wait.until(lambda d: d.execute_script(HALF_WAY))
            driver.save_screenshot(output)
    finally:
        driver.quit()


if __name__ == "__main__":
    main(sys.argv[1])
