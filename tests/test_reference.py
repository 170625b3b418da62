from __future__ import annotations

from app.reference import README, render
from app.settings import Settings


def test_readme_reference_sections_are_up_to_date():
    text = README.read_text(encoding="utf-8")

    assert render(text) == text, "README.md is stale: run `make docs`"


def test_every_setting_and_metric_is_in_the_readme():
    text = README.read_text(encoding="utf-8")

    for name in Settings.model_fields:
        assert f"`TAILSCRIBE_{name.upper()}`" in text
    for metric in ("tailscribe_requests_total", "tailscribe_inflight_requests", "tailscribe_storage_write_seconds"):
        assert metric in text
