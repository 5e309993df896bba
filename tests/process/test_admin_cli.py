"""``musicplayground admin grant|revoke``: takes effect on a running server at once."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.server_process import ServerProcess, run_cli


@pytest.mark.timeout(240)  # five CLI processes and a server on a shared 2-core machine
def test_admin_grant_and_revoke_apply_without_a_restart(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path / "data")}
    assert run_cli("db", "upgrade", env=env).returncode == 0
    with ServerProcess(env, log_path=tmp_path / "server.log") as server:
        session = requests.post(f"{server.url}/api/auth/anonymous", timeout=5).json()
        headers = {"Authorization": f"Bearer {session['token']}"}
        named = requests.patch(
            f"{server.url}/api/users/me", json={"username": "mod_one"}, headers=headers, timeout=5
        )
        assert named.status_code == 200
        reports = f"{server.url}/api/admin/reports"
        assert requests.get(reports, headers=headers, timeout=5).status_code == 403

        granted = run_cli("admin", "grant", "MOD_ONE", env=env)
        assert granted.returncode == 0 and "mod_one is now an admin" in granted.stdout, granted.stderr
        assert requests.get(reports, headers=headers, timeout=5).status_code == 200
        assert (
            requests.get(f"{server.url}/api/users/me", headers=headers, timeout=5).json()["isAdmin"] is True
        )

        revoked = run_cli("admin", "revoke", session["user"]["id"], env=env)
        assert revoked.returncode == 0 and "no longer an admin" in revoked.stdout
        assert requests.get(reports, headers=headers, timeout=5).status_code == 403

    unknown = run_cli("admin", "grant", "nobody_here", env=env)
    assert unknown.returncode != 0 and "no user 'nobody_here'" in unknown.stderr
    assert "grant" in run_cli("admin", "--help", env={}).stdout
