"""``agentcast:scrape``: the bench's agentcast served while Prometheus-style scrapes of
/metrics hit its port once a second, to compare against the same server unscraped."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agentcast.bench.peers import parse_spec
from agentcast.bench.peers.agentcast import AgentcastPeer
from clients import run, wait_for


def test_a_scraping_peer_fetches_metrics_until_it_stops() -> None:
    peer = AgentcastPeer(scrape=1)
    peer.start()
    try:
        run(wait_for(lambda: peer.scrapes >= 2, 10, "two scrapes"))
        families = {f.name for f in text_string_to_metric_families(peer.last_scrape)}
        assert "agentcast_deliveries" in families  # the _total suffix is the sample's
    finally:
        peer.stop()
    scrapes = peer.scrapes
    assert peer._scraper is not None and not peer._scraper.is_alive()
    assert peer.scrapes == scrapes


@pytest.mark.parametrize(
    "spec",
    ["agentcast:scrape:tls", "agentcast:backplane=redis://127.0.0.1:6379/0:workers=2:scrape"],
)
def test_scrape_is_refused_with_tls_or_workers(spec: str) -> None:
    with pytest.raises(ValueError, match="scrape is benchmarked without tls and workers"):
        parse_spec(spec)
