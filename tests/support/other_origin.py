"""An attacker's page on another port of the same host, for the browser tests: it can frame the
app, read document.cookie, and open the app's websocket and speak Streamlit's protocol to it
(the browser sends the app's cookies along: cookies are not kept apart by port)."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from tests.support.live_app import free_port

# Opens the app's websocket, asks for a script run, and collects what the server sends
# until the run has finished (or a timeout).
_PROBE = """([url, request]) => new Promise(resolve => {
  const received = [];
  const ws = new WebSocket(url, ["streamlit"]);
  ws.binaryType = "arraybuffer";
  const done = why => { try { ws.close(); } catch (e) {} resolve({why, received}); };
  ws.onopen = () => ws.send(new Uint8Array(request));
  ws.onmessage = event => {
    const bytes = new Uint8Array(event.data);
    let text = "";
    for (const b of bytes) text += String.fromCharCode(b);
    received.push(btoa(text));
  };
  ws.onclose = event => done("closed " + event.code);
  setTimeout(() => done("timeout"), 20000);
})"""


@contextmanager
def other_origin(html: str = "<html><body>another site</body></html>") -> Iterator[str]:
    """Serve `html` at http://127.0.0.1:<another port>/ while the block runs; its base URL."""
    body = html.encode()

    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def run_app_over_websocket(page, app_base_url: str, path: str = "") -> str:
    """From `page` (whatever its origin), run the app's script over a new websocket as the
    browser would; the text of every message the server sent back."""
    request = BackMsg()
    request.rerun_script.query_string = ""
    request.rerun_script.page_name = path
    request.rerun_script.context_info.url = f"{app_base_url}/{path}"
    ws_url = app_base_url.replace("http://", "ws://", 1) + "/_stcore/stream"
    result = page.evaluate(_PROBE, [ws_url, list(request.SerializeToString())])
    messages = []
    for encoded in result["received"]:
        message = ForwardMsg()
        message.ParseFromString(base64.b64decode(encoded))
        messages.append(str(message))
    assert any("script_finished" in m for m in messages), (result["why"], messages[-3:])
    return "\n".join(messages)
