"""The connector this project replaces, rebuilt from the seed document for side-by-side figures.

The seed (``shared/seed/connector-design.pt.md``) describes a synchronous Flask app run with
``gunicorn -w 4``: ``POST /webhook/chatwoot`` checks the HMAC signature, asks MCP-Crew in the
``chatwootai`` dialect (``{"action":"process_message","data":{...}}``) with Requests, and posts
the crew's ``reply_content`` back to Chatwoot before answering the webhook. Context lives in
process memory (last ``MAX_CONTEXT_MESSAGES`` per conversation). Configuration comes from the
seed's environment variables. Nothing here is part of the product: it exists so that
``bench/capacity.py`` can measure both on the same core, against the same fakes.

    gunicorn -w 4 -b 127.0.0.1:5000 "bench.ancestor:create_app()"
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import defaultdict, deque
from typing import Any

import requests
from flask import Flask, jsonify, request


def create_app() -> Flask:
    app = Flask(__name__)
    chatwoot_url = os.environ["CHATWOOT_API_URL"].rstrip("/")
    if chatwoot_url.endswith("/api"):
        chatwoot_url = chatwoot_url[:-4]
    token = os.environ["CHATWOOT_API_ACCESS_TOKEN"]
    secret = os.environ.get("CHATWOOT_WEBHOOK_SECRET", "")
    crew_url = os.environ["MCP_CREW_API_URL"]
    crew_key = os.environ.get("MCP_CREW_API_KEY", "")
    max_context = int(os.environ.get("MAX_CONTEXT_MESSAGES", "10"))
    context: dict[Any, deque[dict[str, Any]]] = defaultdict(lambda: deque(maxlen=max_context))

    def signature_ok(body: bytes) -> bool:
        if not secret:
            return True
        stamp = request.headers.get("X-Chatwoot-Timestamp", "")
        given = request.headers.get("X-Chatwoot-Signature", "")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > 300:
            return False
        mac = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        return hmac.compare_digest("sha256=" + mac, given)

    @app.post("/webhook/chatwoot")
    def webhook() -> Any:
        body = request.get_data()
        if not signature_ok(body):
            return jsonify({"status": "error", "message": "invalid signature"}), 401
        payload = request.get_json(silent=True) or {}
        if payload.get("event") != "message_created" or payload.get("message_type") != "incoming":
            return jsonify({"status": "ignored"})
        conversation = payload.get("conversation") or {}
        conversation_id = conversation.get("id") or conversation.get("display_id")
        account_id = (payload.get("account") or {}).get("id")
        history = context[conversation_id]
        data = {
            "message": payload.get("content") or "",
            "message_id": payload.get("id"),
            "conversation_id": conversation_id,
            "sender": payload.get("sender") or {},
            "channel": (conversation.get("channel") or "").replace("Channel::", "").lower(),
            "context": {"history": list(history)},
        }
        history.append({"role": "customer", "content": data["message"]})
        crew = requests.post(crew_url, json={"action": "process_message", "data": data},
                             headers={"Authorization": f"Bearer {crew_key}"}, timeout=30)
        answer = crew.json()
        if answer.get("auto_reply") and answer.get("reply_content"):
            reply = answer["reply_content"]
            requests.post(
                f"{chatwoot_url}/api/v1/accounts/{account_id}/conversations/{conversation_id}/messages",
                json={"content": reply, "message_type": "outgoing", "private": False},
                headers={"api_access_token": token}, timeout=30,
            )
            history.append({"role": "bot", "content": reply})
        return jsonify({"status": "success"})

    return app
