"""Read a loop's Yjs document, change it with pycrdt, and post the change back.

    python docs/examples/yjs_edit.py http://localhost:8080 <loop id> <access token> "New name"

Needs only pycrdt (``pip install pycrdt``). The server applies the update as you, with the
checks of a live edit, and collaborators connected right now see the change at once.
"""

from __future__ import annotations

import base64
import json
import sys
import urllib.request

from pycrdt import Doc, Map


def main(base_url: str, loop_id: str, token: str, new_name: str) -> None:
    url = f"{base_url}/api/loops/{loop_id}/yjs"
    auth = {"Authorization": f"Bearer {token}"}

    # 1. The whole document as one Yjs update.
    with urllib.request.urlopen(urllib.request.Request(url, headers=auth)) as response:
        doc: Doc = Doc()
        doc.apply_update(response.read())
    meta = doc.get("meta", type=Map)
    print(f"read {meta.get('name')!r} at {meta.get('bpm')} bpm")

    # 2. Change it locally, keeping only what the change adds.
    before = doc.get_state()
    meta["name"] = new_name
    update = doc.get_update(before)

    # 3. Post the update back.
    request = urllib.request.Request(
        url, data=update, method="POST", headers={**auth, "Content-Type": "application/octet-stream"}
    )
    with urllib.request.urlopen(request) as response:
        state_vector = base64.b64decode(json.load(response)["stateVector"])
    print(f"renamed to {new_name!r}; the document's state vector is now {state_vector.hex()}")


if __name__ == "__main__":
    main(*sys.argv[1:5])
