"""Edit a loop live over Socket.IO from Python, as a collaborator: read, edit, presence, react.

    python docs/examples/realtime_edit.py http://localhost:3001 <loop id> <access token> [seconds]

Run it from this repository's environment (``uv run``): it uses ``loadtest.client.CollabClient``
and the document layout of ``music``. It adds a snare on step 8, sets 100 bpm, shows a cursor,
then waits up to ``seconds`` (default 30) for somebody to rename the loop "Renamed".
A test runs it (tests/realtime/test_realtime_example.py).
"""

import asyncio
import sys

from pycrdt import Map

from loadtest.client import CollabClient, CollabConnectionRefused
from music.reading import loop_doc_to_content
from music.schema import step_key


async def main(base_url: str, loop_id: str, token: str, seconds: float = 30) -> None:
    client = CollabClient(base_url, "loop", loop_id, token=token)
    try:
        await client.connect()  # returns once the document is loaded (two-way sync done)
    except CollabConnectionRefused as exc:
        sys.exit(f"refused: {exc.message}")  # e.g. "invalid token: ...", "loop not found"
    async with client:  # closes at the end
        print("role:", client.role, "members:", client.presence)
        print("content:", loop_doc_to_content(client.doc))  # the loop as REST JSON

        # Edit: every transaction is sent as one sync-update.
        cell = {"step": 8, "soundId": "drum-snare", "velocity": 0.8}
        with client.doc.transaction():
            client.doc.get("steps", type=Map)[step_key(cell)] = Map(cell)
            client.doc.get("meta", type=Map)["bpm"] = 100

        # Presence.
        client.set_awareness({"user": {"name": "bot"}, "cursor": {"bar": 2, "step": 8, "row": 0}})

        # React to others: wait until somebody renames the loop (or time out).
        meta = client.doc.get("meta", type=Map)
        try:
            await client.wait_for(lambda: meta.get("name") == "Renamed", timeout=seconds)
            print("renamed:", meta.get("name"))
        except TimeoutError:
            print("not renamed within", seconds, "s")
        print("server errors:", client.errors)  # e.g. [{"code": "read_only", ...}] for a viewer


if __name__ == "__main__":
    base_url, loop_id, token, *rest = sys.argv[1:]
    asyncio.run(main(base_url, loop_id, token, *(float(s) for s in rest)))
