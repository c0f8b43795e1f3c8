"""The studio shell in a real browser: it serves offline assets, switches panels, keeps the
file browser inside its roots, and requires the token off loopback."""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.integration


def test_every_asset_is_local_and_every_panel_loads(start_studio, page):
    studio = start_studio()
    remote = []
    page.on("request", lambda r: remote.append(r.url) if not r.url.startswith(studio.url) else None)
    page.goto(studio.url + "/")
    for tab in ("Data", "Config", "Training", "Evaluation", "Mining Queue", "Cascade Testing", "Export"):
        page.get_by_role("tab", name=tab, exact=True).click()
        panel = page.locator("section.panel:not([hidden])")
        expect(panel).not_to_be_empty()
        expect(panel.locator(".error", has_text="failed to load")).to_have_count(0)
    assert remote == [], f"requests left the machine: {remote}"


def test_the_file_api_refuses_paths_out_of_its_roots(start_studio, tmp_path):
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key.wav").write_bytes(b"RIFF")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    os.symlink(outside, workspace / "escape")
    studio = start_studio(workspace=workspace)
    for path in ("workspace/../secret", "workspace/escape", "workspace/escape/key.wav", "/etc", "nope/x"):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"{studio.url}/api/files?path={path}", timeout=10)
        assert err.value.code in (403, 404)
        assert "error" in json.loads(err.value.read())
    with urllib.request.urlopen(f"{studio.url}/api/files?path=workspace", timeout=10) as response:
        names = [e["name"] for e in json.loads(response.read())["entries"]]
    assert "escape" not in names and "data" in names


def test_off_loopback_needs_a_token(start_studio, page):
    from click.testing import CliRunner

    from trainer.cli import main
    refused = CliRunner().invoke(main, ["studio", "--host", "0.0.0.0", "--port", "0"])
    assert refused.exit_code == 2 and "--token" in refused.output

    studio = start_studio("--token", "s3cret-token-123456")
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(studio.url + "/api/state", timeout=10)
    assert err.value.code == 401
    page.goto(studio.url + "/?token=s3cret-token-123456")
    expect(page.locator("#workspace")).to_contain_text("workspace:")


def test_a_busy_port_is_a_clear_error(tmp_path):
    import socket

    from click.testing import CliRunner

    from trainer.cli import main
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["studio", "--workspace", str(tmp_path / "ws"), "--port", str(port)])
    assert result.exit_code == 1 and "cannot listen" in result.output and "Traceback" not in result.output


def test_a_rebinding_or_cross_site_request_is_refused(start_studio):
    studio = start_studio()

    def status(method: str, path: str, headers: dict[str, str]) -> int:
        request = urllib.request.Request(studio.url + path, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as err:
            assert "error" in json.loads(err.read())
            return err.code

    own = f"127.0.0.1:{studio.port}"
    assert status("GET", "/api/files?path=workspace", {"Host": own}) == 200
    for host in (f"attacker.example:{studio.port}", f"127.0.0.1:{studio.port + 1}"):
        assert status("GET", "/api/files?path=workspace", {"Host": host}) == 403, host
    with urllib.request.urlopen(studio.url + "/", timeout=10) as response:
        token = re.search(r'name="hark-csrf" content="([^"]+)"', response.read().decode()).group(1)
    assert status("POST", "/api/jobs/train/stop", {"Origin": "http://attacker.example"}) == 403
    assert status("POST", "/api/jobs/train/stop", {}) == 403
    assert status("POST", "/api/jobs/train/stop", {"X-Hark-Csrf": token, "Origin": "http://attacker.example"}) == 403
    # the page's own token and origin reach the API (nothing to stop: not a 403)
    assert status("POST", "/api/jobs/train/stop", {"X-Hark-Csrf": token, "Origin": f"http://{own}"}) != 403
