"""The AsyncAPI document of the live wire (``/api/asyncapi.json``): what a Socket.IO client of a
loop or song sends and receives (docs/realtime.md tells the same in prose), and the live inbox
(the ``/notifications`` namespace, docs/events.md).

AsyncAPI 3.0 describes the application, so ``send`` operations are the server's events (a
client receives them) and ``receive`` operations are what a client may send. Socket.IO
particulars have no AsyncAPI binding and are ``x-`` fields: the handshake ``auth`` and its
refusals (``x-socketio-handshake``), and acknowledgements (``x-socketio-ack``: the payload of
the ack a message expects). Payload schemas are JSON Schema; ``{"type": "string", "format":
"binary"}`` is a Socket.IO binary attachment (a Yjs encoding). A test connects real clients and
checks every event and payload the server emits against this document.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import urlsplit

from pydantic.json_schema import models_json_schema

from events import inbox_sockets
from identity.errors import ExpiredToken, InvalidToken
from realtime.errors import MEANINGS, ErrorCode
from realtime.ywebsocket.close_codes import MEANINGS as CLOSE_MEANINGS
from rest.community_schemas import CommentPublic
from rest.event_schemas import NotificationPublic
from rest.schemas import PresenceMember

BINARY: Final = {"type": "string", "format": "binary"}

# ``error`` codes: refusals of one message (the connection stays up), and those that end it.
# ``room_full`` refuses a handshake (a ``connect_error``), never an ``error`` event.
ERROR_CODES: Final = {
    code.value: meaning for code, meaning in MEANINGS.items() if code is not ErrorCode.ROOM_FULL
}

# ``data.code`` of a refusal for a bad token (identity.errors).
TOKEN_REFUSAL_CODES: Final = (ExpiredToken.code, InvalidToken.code)

# Refusals of the handshake (``connect_error``): the message starts with one of these.
REFUSALS: Final = {
    "authentication required": "neither token nor shareToken",
    "token expired": "data.code token_expired: refresh the access token and connect again",
    "invalid token": "data.code invalid_token: sign in again",
    "loop not found / song not found": "unknown id, or a private document of someone else",
    "this document already has": "the room is full; retry later",
    "you already have": "too many connections of one user to one document",
    "this document has as many viewers as it can take": "the last quarter of a room is for editors",
    "unknown namespace": "not /yjs|loop:<uuid> or /yjs|song:<uuid>",
    "server is shutting down": "retry after a second or two",
    "sign-in verification is temporarily unavailable": "Firebase unreachable; retry later",
    "too many connection attempts": "RATE_LIMIT_SOCKET_CONNECTS_PER_IP_PER_MINUTE; retry later",
}


def _object(properties: dict[str, Any], *, required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


def _messages(schemas_ref: str) -> dict[str, dict[str, Any]]:
    """Every message of the wire, keyed by a component name; ``name`` is the Socket.IO event."""

    def ref(model: str) -> dict[str, str]:
        return {"$ref": f"{schemas_ref}{model}"}

    return {
        "syncStep1FromClient": {
            "name": "sync-step-1",
            "summary": "Your state vector (Y.encodeStateVector); the ack returns what you lack",
            "payload": BINARY,
            "x-socketio-ack": BINARY,
        },
        "syncStep1FromServer": {
            "name": "sync-step-1",
            "summary": "The server's state vector, on every connect; ack with what it lacks "
            "(Y.encodeStateAsUpdate(doc, vector)). A viewer's answer is ignored",
            "payload": BINARY,
            "x-socketio-ack": BINARY,
        },
        "syncUpdate": {
            "name": "sync-update",
            "summary": "One Yjs update (v1 encoding), one per transaction; never echoed to its sender",
            "payload": BINARY,
        },
        "awarenessUpdate": {
            "name": "awareness-update",
            "summary": "y-protocols encodeAwarenessUpdate: cursors and names (a state is a JSON object "
            "of at most 8 KB, or null)",
            "payload": BINARY,
        },
        "roleChanged": {
            "name": "role-changed",
            "summary": "Your role, right after connecting and whenever it changes live",
            "payload": _object({"role": {"type": "string", "enum": ["owner", "editor", "viewer"]}}),
        },
        "presence": {
            "name": "presence",
            "summary": "Who is in the room (from tokens, one entry per user), after joins and leaves",
            "payload": _object({"members": {"type": "array", "items": ref("PresenceMember")}}),
        },
        "error": {
            "name": "error",
            "summary": "A message of yours was refused, or (access_revoked, document_deleted, "
            "too_many_refused_updates) you are about to be disconnected",
            "payload": _object(
                {
                    "code": {"type": "string", "enum": list(ERROR_CODES), "x-meanings": ERROR_CODES},
                    "message": {"type": "string"},
                }
            ),
        },
        "serverShutdown": {
            "name": "server-shutdown",
            "summary": "The instance is restarting; the transport drops next and the client reconnects",
            "payload": _object({"message": {"type": "string"}}),
        },
        "comment": {
            "name": "comment",
            "summary": "A comment was posted, edited or deleted (over REST); apply it by id",
            "payload": _object(
                {
                    "action": {"type": "string", "enum": ["created", "edited", "deleted"]},
                    "comment": ref("CommentPublic"),
                }
            ),
        },
    }


# Which messages each side sends (by component name).
SERVER_SENDS: Final = (
    "syncStep1FromServer",
    "syncUpdate",
    "awarenessUpdate",
    "roleChanged",
    "presence",
    "error",
    "serverShutdown",
    "comment",
)
CLIENT_SENDS: Final = ("syncStep1FromClient", "syncUpdate", "awarenessUpdate")

# The y-websocket wire (realtime/ywebsocket/): one binary frame per message, whose leading
# varUints say what it is (``x-ywebsocket-message``: [message type] or [0, sync type]).
_YWS_FRAMING = "one binary WebSocket frame: varUint message type{}, then the payload as a varUint8Array"
YWS_MESSAGES: Final[dict[str, dict[str, Any]]] = {
    "ywsSyncStep1": {
        "name": "sync step 1",
        "summary": "A state vector; answered with sync step 2. The server sends its own on connect",
        "x-ywebsocket-message": [0, 0],
    },
    "ywsSyncStep2": {
        "name": "sync step 2",
        "summary": "What the other side lacks (a Yjs update); a viewer's is ignored",
        "x-ywebsocket-message": [0, 1],
    },
    "ywsUpdate": {
        "name": "update",
        "summary": "A Yjs update; relayed to everyone in the room (both wires) once durable",
        "x-ywebsocket-message": [0, 2],
    },
    "ywsAwareness": {
        "name": "awareness",
        "summary": "A y-protocols awareness update (cursors, names); shared with both wires",
        "x-ywebsocket-message": [1],
    },
    "ywsAuth": {
        "name": "auth",
        "summary": "Client to server, first message when the URL has no token: a varString of "
        'JSON {"token"} or {"shareToken"}. Server to client: 0 (permission denied) and a '
        "varString reason, before a close with 4401, 4403, 4404 or 4409",
        "x-ywebsocket-message": [2],
    },
    "ywsQueryAwareness": {
        "name": "query awareness",
        "summary": "No payload; answered with every awareness state of the room",
        "x-ywebsocket-message": [3],
    },
}
YWS_SERVER_SENDS: Final = ("ywsSyncStep1", "ywsSyncStep2", "ywsUpdate", "ywsAwareness", "ywsAuth")
YWS_CLIENT_SENDS: Final = (
    "ywsSyncStep1",
    "ywsSyncStep2",
    "ywsUpdate",
    "ywsAwareness",
    "ywsAuth",
    "ywsQueryAwareness",
)


# The live inbox: the server only sends; a refused handshake is a ``connect_error``.
INBOX_REFUSALS: Final = {
    "sign in first": "no auth {token}",
    "invalid token": "data.code token_expired or invalid_token: refresh the token or sign in again",
}


def _inbox(messages: dict[str, Any], channels: dict[str, Any], operations: dict[str, Any]) -> None:
    """The ``/notifications`` namespace: its one message, channel and operation."""
    messages["notification"] = {
        "name": inbox_sockets.EVENT,
        "summary": "A new or updated entry of your inbox (as GET /api/notifications lists it), "
        "from whichever instance wrote it",
        "payload": {"$ref": "#/components/schemas/NotificationPublic"},
    }
    channels["notifications"] = {
        "address": inbox_sockets.NAMESPACE,
        "servers": [{"$ref": "#/servers/api"}],
        "title": "Your live inbox",
        "description": "The Socket.IO namespace of the signed-in user's notifications "
        "(docs/events.md). Engine.IO path /socket.io, WebSocket transport only",
        "messages": {"notification": {"$ref": "#/components/messages/notification"}},
        "x-socketio-handshake": {
            "auth": {"$ref": "#/components/schemas/InboxAuth"},
            "refusals": INBOX_REFUSALS,
            "refusalData": _object({"code": {"type": "string", "enum": list(TOKEN_REFUSAL_CODES)}}),
        },
    }
    operations["notificationsSendNotification"] = {
        "action": "send",
        "channel": {"$ref": "#/channels/notifications"},
        "messages": [{"$ref": "#/channels/notifications/messages/notification"}],
    }


def build_asyncapi(*, version: str, server_url: str) -> dict[str, Any]:
    """The AsyncAPI 3.0 document of the live wire of the server at ``server_url``."""
    _, schema = models_json_schema(
        [
            (PresenceMember, "serialization"),
            (CommentPublic, "serialization"),
            (NotificationPublic, "serialization"),
        ],
        ref_template="#/components/schemas/{model}",
    )
    schemas: dict[str, Any] = schema.get("$defs", {})
    schemas["HandshakeAuth"] = _object(
        {
            "token": {"type": "string", "description": "an access token, or a Firebase ID token"},
            "shareToken": {"type": "string", "description": "the token of a share link (read-only)"},
        },
        required=[],
    )
    schemas["InboxAuth"] = _object(
        {"token": {"type": "string", "description": "an access token, or a Firebase ID token"}}
    )
    messages = _messages("#/components/schemas/")
    url = urlsplit(server_url)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    for kind in ("loop", "song"):
        channels[kind] = {
            "address": f"/yjs|{kind}:{{id}}",
            "title": f"A live {kind}",
            "description": f"The Socket.IO namespace of one {kind}: its Yjs document, presence and "
            "events (docs/realtime.md). Engine.IO path /socket.io, WebSocket transport only",
            "parameters": {"id": {"description": f"the {kind}'s id, a lowercase UUID"}},
            "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in messages},
            "x-socketio-handshake": {
                "auth": {"$ref": "#/components/schemas/HandshakeAuth"},
                "refusals": REFUSALS,
                "refusalData": _object(
                    {"code": {"type": "string", "enum": ["token_expired", "invalid_token"]}}
                ),
            },
        }
        for name in SERVER_SENDS:
            operations[f"{kind}Send{name[0].upper()}{name[1:]}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{kind}"},
                "messages": [{"$ref": f"#/channels/{kind}/messages/{name}"}],
            }
        for name in CLIENT_SENDS:
            operations[f"{kind}Receive{name[0].upper()}{name[1:]}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{kind}"},
                "messages": [{"$ref": f"#/channels/{kind}/messages/{name}"}],
            }
    for name, message in YWS_MESSAGES.items():
        sync = len(message["x-ywebsocket-message"]) == 2
        messages[name] = {
            **message,
            "payload": BINARY,
            "description": _YWS_FRAMING.format(", varUint sync type" if sync else ""),
        }
    for kind in ("loop", "song"):
        channel = f"ywebsocket{kind.capitalize()}"
        channels[channel] = {
            "address": f"/ws/{kind}:{{id}}",
            "servers": [{"$ref": "#/servers/ywebsocket"}],
            "title": f"A live {kind} over y-websocket",
            "description": f"The y-websocket endpoint of one {kind} (the npm y-websocket "
            "WebsocketProvider with serverUrl <origin>/ws and roomname "
            f"{kind}:<id>); credentials as query parameters token or shareToken, or a first "
            "auth message. Refusals close the socket with a code (docs/y-websocket.md)",
            "parameters": {"id": {"description": f"the {kind}'s id, a lowercase UUID"}},
            "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in YWS_MESSAGES},
            "x-websocket-close-codes": {str(int(code)): meaning for code, meaning in CLOSE_MEANINGS.items()},
        }
        for name in YWS_SERVER_SENDS:
            operations[f"{channel}Send{name[3:]}"] = {
                "action": "send",
                "channel": {"$ref": f"#/channels/{channel}"},
                "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"}],
            }
        for name in YWS_CLIENT_SENDS:
            operations[f"{channel}Receive{name[3:]}"] = {
                "action": "receive",
                "channel": {"$ref": f"#/channels/{channel}"},
                "messages": [{"$ref": f"#/channels/{channel}/messages/{name}"}],
            }
    for kind in ("loop", "song"):
        channels[kind]["servers"] = [{"$ref": "#/servers/api"}]
    _inbox(messages, channels, operations)
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Music Playground live documents",
            "version": version,
            "description": "The y-socket.io wire of loops and songs, with the server's own events "
            "(client authors: docs/realtime.md; the JS client kit speaks it), the y-websocket "
            "wire of the same rooms (docs/y-websocket.md), and the live inbox of notifications "
            "(docs/events.md).",
        },
        "defaultContentType": "application/json",
        "servers": {
            "api": {
                "host": url.netloc,
                "protocol": "wss" if url.scheme == "https" else "ws",
                "pathname": "/socket.io",
                "description": "Socket.IO v5 protocol (Engine.IO v4), WebSocket transport only",
            },
            "ywebsocket": {
                "host": url.netloc,
                "protocol": "wss" if url.scheme == "https" else "ws",
                "pathname": "/ws",
                "description": "The y-websocket protocol (y-protocols sync and awareness)",
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }
