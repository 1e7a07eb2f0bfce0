#!/usr/bin/env python3
"""A merchant's backend against wechat-checkout, in the Python standard library only.

It does what a shop's server does: creates an order through the API, receives the webhooks and
verifies each one (HMAC-SHA256 over "<t>.<raw body>", constant-time compare, a 5-minute window,
deduplicated by id), confirms the payment through the API before "shipping" (never trusting the
shopper's browser), then refunds part of it, safely retried with an Idempotency-Key, and waits for
the refund's webhook. Against the demo (simulator mode) it also plays the shopper, so the whole
loop runs on one machine; against a real deployment that step is a person in WeChat.

    python3 examples/merchant/merchant.py --base http://127.0.0.1:8000 --token TOKEN --secret WEBHOOK_SECRET

Exit status 0 when every step held; otherwise a message saying which did not.
"""

import argparse
import hashlib
import hmac
import http.cookiejar
import http.server
import json
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid

WECHAT_UA = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
             "(KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.50 NetType/WIFI Language/zh_CN")
SIGNATURE_WINDOW_SECONDS = 300


def fail(message):
    print(f"FAILED: {message}", file=sys.stderr)
    sys.exit(1)


def verify_signature(secret: bytes, header: str, raw_body: bytes, now: float) -> bool:
    """The check every receiver must make, on the bytes received, before parsing them."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    t, v1 = parts.get("t", ""), parts.get("v1", "")
    if not t.isdigit() or not v1:
        return False
    expected = hmac.new(secret, f"{t}.".encode() + raw_body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, v1) and abs(now - int(t)) < SIGNATURE_WINDOW_SECONDS


class Webhooks:
    """The merchant's webhook endpoint: verified events, once each, on a queue."""

    def __init__(self, secret: bytes, port: int):
        self.secret, self.events, self.seen, self.refused = secret, queue.Queue(), set(), 0
        hooks = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                signature = self.headers.get("X-Wechat-Checkout-Signature", "")
                if not verify_signature(hooks.secret, signature, raw, time.time()):
                    hooks.refused += 1
                    self.send_response(400)
                    self.end_headers()
                    return
                event = json.loads(raw)
                # Delivery is at least once: the id makes a repeat harmless.
                if event["id"] not in hooks.seen:
                    hooks.seen.add(event["id"])
                    hooks.events.put(event)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/wechat-checkout"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, event_type: str, out_trade_no: str, timeout: float) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                event = self.events.get(timeout=max(0.1, deadline - time.time()))
            except queue.Empty:
                break
            if event["type"] == event_type and event["data"]["out_trade_no"] == out_trade_no:
                return event
        fail(f"no verified {event_type} webhook for {out_trade_no} within {timeout:.0f} s")


class Api:
    """The merchant API with a bearer token."""

    def __init__(self, base: str, token: str):
        self.base, self.token = base.rstrip("/"), token

    def call(self, method: str, path: str, body=None, idempotency_key=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Content-Type", "application/json")
        if idempotency_key:
            req.add_header("Idempotency-Key", idempotency_key)
        try:
            with urllib.request.urlopen(req, timeout=30) as res:
                return res.status, res.headers, json.loads(res.read())
        except urllib.error.HTTPError as e:
            return e.code, e.headers, json.loads(e.read() or b"null")


def play_the_shopper(base: str, out_trade_no: str):
    """Demo only: opens the checkout as WeChat would (OAuth through the simulator), asks for the
    payment parameters, and pays in the simulator."""
    jar = http.cookiejar.CookieJar()
    browser = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    browser.addheaders = [("User-Agent", WECHAT_UA)]
    with browser.open(f"{base}/pay/{out_trade_no}", timeout=30) as page:
        if "立即支付" not in page.read().decode():
            fail("the checkout page did not offer 立即支付")
    req = urllib.request.Request(f"{base}/pay/{out_trade_no}/jsapi", data=b"", method="POST")
    req.add_header("Origin", base)
    with browser.open(req, timeout=30) as res:
        params = json.loads(res.read())["params"]
    prepay_id = params["package"].removeprefix("prepay_id=")
    pay = urllib.request.Request(f"{base}/simulator/shopper/pay", method="POST",
                                 data=json.dumps({"prepay_id": prepay_id, "outcome": "ok"}).encode())
    pay.add_header("Content-Type", "application/json")
    with browser.open(pay, timeout=30) as res:
        if res.status != 200:
            fail(f"the simulator did not take the payment: {res.status}")


def main():
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--base", required=True, help="the app's address, e.g. http://127.0.0.1:8000")
    args.add_argument("--token", required=True, help="an API token with the refund scope")
    args.add_argument("--secret", required=True, help="the app's WEBHOOK_SECRET")
    args.add_argument("--port", type=int, default=0, help="where to receive webhooks (0: any free port)")
    args.add_argument("--timeout", type=float, default=90, help="seconds to wait for each webhook")
    opts = args.parse_args()
    api, hooks = Api(opts.base, opts.token), Webhooks(opts.secret.encode(), opts.port)

    order_id = f"EX-{uuid.uuid4().hex[:12]}"
    body = {"amount_fen": 1990, "description": "示例商户-龙井茶", "merchant_order_id": order_id,
            "webhook_url": hooks.url}
    status, _, order = api.call("POST", "/api/v1/orders", body, idempotency_key=str(uuid.uuid4()))
    if status != 201:
        fail(f"creating the order: {status} {order}")
    no = order["out_trade_no"]
    print(f"1. order {no} created for {order_id}; the shopper opens {order['checkout_url']}")

    if not order["simulated"]:
        fail("this example plays the shopper, which only the simulator allows")
    play_the_shopper(opts.base, no)
    print("2. the shopper paid (in the simulator)")

    event = hooks.wait_for("order.paid", no, opts.timeout)
    print(f"3. verified webhook {event['type']} #{event['id']}")
    # The webhook says so; the API confirms it before anything ships.
    status, _, confirmed = api.call("GET", f"/api/v1/orders/{no}")
    if status != 200 or confirmed["state"] != "PAID" or confirmed["paid_fen"] != 1990:
        fail(f"the API does not confirm the payment: {status} {confirmed}")
    print(f"4. confirmed through the API: PAID {confirmed['paid_fen']} fen, transaction {confirmed['transaction_id']}")

    key = str(uuid.uuid4())
    refund_body = {"amount_fen": 500, "reason": "部分退货"}
    status, _, refund = api.call("POST", f"/api/v1/orders/{no}/refunds", refund_body, idempotency_key=key)
    if status not in (201, 202):
        fail(f"requesting the refund: {status} {refund}")
    # A retry (say the answer was lost) with the same key is the same refund, never a second one.
    status, headers, again = api.call("POST", f"/api/v1/orders/{no}/refunds", refund_body, idempotency_key=key)
    if again.get("out_refund_no") != refund["out_refund_no"] or headers.get("Idempotent-Replayed") != "true":
        fail(f"a retried refund was not the same refund: {status} {again}")
    print(f"5. refund {refund['out_refund_no']} requested ({refund['state']}); its retry was replayed, not repeated")

    event = hooks.wait_for("order.refunded", no, opts.timeout)
    if event["data"]["refund"]["out_refund_no"] != refund["out_refund_no"]:
        fail(f"the refund webhook names another refund: {event}")
    status, _, settled = api.call("GET", f"/api/v1/refunds/{refund['out_refund_no']}")
    if status != 200 or settled["state"] != "SUCCESS":
        fail(f"the API does not confirm the refund: {status} {settled}")
    print(f"6. verified webhook order.refunded #{event['id']}; the API says the refund is {settled['state']}")

    forged = urllib.request.Request(hooks.url, method="POST", data=json.dumps(event).encode())
    forged.add_header("X-Wechat-Checkout-Signature", f"t={int(time.time())},v1={'0' * 64}")
    try:
        urllib.request.urlopen(forged, timeout=10)
        fail("a forged webhook was accepted")
    except urllib.error.HTTPError as e:
        if e.code != 400:
            fail(f"a forged webhook got {e.code}")
    print(f"7. a forged webhook was refused ({hooks.refused} refused in all)")
    print("OK")


if __name__ == "__main__":
    main()
