"""Realistic records, built from docs/tailscale-wire-format.md and the Hunters integration page.

Functions return fresh objects, so a test may change its copy freely.
"""

from __future__ import annotations

import orjson

from app.types import Row

RECORDED = "2026-06-03T15:33:01.552946176Z"


def streamed_audit() -> Row:
    """One envelope of a concatenated-envelope delivery of the configuration audit stream."""
    return {
        "time": 1780500776.773,
        "event": {
            "eventGroupID": "0378d8f57300d172ef7ae3826e097ef0",
            "origin": "ADMIN_CONSOLE",
            "actor": {
                "id": "uZKk3KSfrH11CNTRL",
                "type": "USER",
                "loginName": "john.doe@example.com",
                "displayName": "John Doe",
                "tags": [],
            },
            "target": {
                "id": "nBLYviWLGB21CNTRL",
                "name": "build-01.tail1234.ts.net",
                "type": "NODE",
                "property": "KEY_EXPIRY",
                "isEphemeral": False,
            },
            "action": "UPDATE",
            "old": "2026-09-01T00:00:00Z",
            "new": {"keyExpiryDisabled": True},
            "actionDetails": "",
            "error": "",
            "deferredAt": "0001-01-01T00:00:00Z",
        },
        "fields": {"recorded": RECORDED},
    }


def streamed_network() -> Row:
    """One envelope of the network flow stream, with client v1.92's `srcNode`/`dstNodes`."""
    return {
        "time": 1780500776.773,
        "event": {
            "nodeId": "nXYZ1CNTRL",
            "start": "2026-06-03T15:32:51.773109845Z",
            "end": "2026-06-03T15:32:56.773203567Z",
            "virtualTraffic": [
                {
                    "proto": 6,
                    "src": "100.64.0.1:52734",
                    "dst": "100.64.0.2:443",
                    "txPkts": 12,
                    "txBytes": 1884,
                    "rxPkts": 10,
                    "rxBytes": 5230,
                },
                {
                    "proto": 17,
                    "src": "[fd7a:115c:a1e0::1]:41641",
                    "dst": "[fd7a:115c:a1e0::2]:53",
                    "txPkts": 1,
                    "txBytes": 72,
                },
                {"proto": 99, "src": "100.64.0.1", "dst": "100.64.0.2"},
            ],
            "subnetTraffic": [
                {"proto": 6, "src": "100.64.0.1:50000", "dst": "192.168.1.10:22", "txPkts": 3, "txBytes": 180},
            ],
            "exitTraffic": [{"txPkts": 40, "txBytes": 9000, "rxPkts": 38, "rxBytes": 41000}],
            "physicalTraffic": [
                {
                    "src": "100.64.0.1:0",
                    "dst": "203.0.113.7:41641",
                    "txPkts": 20,
                    "txBytes": 3000,
                    "rxPkts": 18,
                    "rxBytes": 2600,
                },
                {"src": "100.64.0.1:0", "dst": "127.3.3.40:1", "txPkts": 2, "txBytes": 300},
            ],
            "srcNode": {
                "nodeId": "nXYZ1CNTRL",
                "name": "laptop.tail1234.ts.net",
                "addresses": ["100.64.0.1", "fd7a:115c:a1e0::1"],
                "os": "linux",
                "user": "alice@example.com",
            },
            "dstNodes": [
                {
                    "nodeId": "nABC2CNTRL",
                    "name": "server.tail1234.ts.net",
                    "addresses": ["100.64.0.2/32", "fd7a:115c:a1e0::2/128"],
                    "tags": ["tag:server"],
                }
            ],
        },
        "fields": {"recorded": RECORDED},
    }


# The two sample records of Hunters' Tailscale page (seeds/hunters-tailscale-integration.txt), verbatim:
# bare S3-export records; the network one has proto "ipv4" and invalid IPs such as 1.O.3.22.
HUNTERS_AUDIT = (
    '{"action":"CREATE","actor":{"displayName":"John Doe","id":"uZKk3KSfrH11DEVEL","loginName":"john.doe@example.com",'
    '"type":"USER"},"deferredAt":"0001-01-01T00:00:00Z","eventGroupID":"0378d8f57300d172ef7ae3826e097ef0",'
    '"eventTime":"2024-06-06T15:25:26.583893Z","origin":"ADMIN_CONSOLE","target":{"id":"nBLYviWLGB21DEVEL",'
    '"isEphemeral":true,"name":"abc-ejd-dsb.net.io","type":"NODE"},"type":"CONFIG"}'
)
_HUNTERS_ENTRY = (
    '{"proto":"ipv4","src":"1.O.3.22:2341","dst":"1.O.33.O:98","txPkts":10,"txBytes":10000,"rxPkts":10,"rxBytes":10000}'
)
HUNTERS_NETWORK = (
    '{"logged":"2024-06-06T15:27:26.583893Z","nodeId":"ajdfnWEWERjknlk","start":"2024-06-06T15:25:26.583893Z",'
    '"end":"2024-06-06T15:26:26.583893Z",'
    f'"virtualTraffic":[{_HUNTERS_ENTRY}],"subnetTraffic":[{_HUNTERS_ENTRY}],'
    f'"exitTraffic":[{_HUNTERS_ENTRY}],"physicalTraffic":[{_HUNTERS_ENTRY}]}}'
)


def hunters_audit() -> Row:
    record: Row = orjson.loads(HUNTERS_AUDIT)
    return record


def hunters_network() -> Row:
    record: Row = orjson.loads(HUNTERS_NETWORK)
    return record
