"""HTML bodies: the nginx error pages Kommo's gateway answers with, and the sandbox's page layout."""

from __future__ import annotations

from html import escape

GATEWAY_TITLES = {
    403: "403 Forbidden",
    429: "429 Too Many Requests",
    500: "500 Internal Server Error",
    502: "502 Bad Gateway",
    503: "503 Service Temporarily Unavailable",
    504: "504 Gateway Time-out",
}


def gateway_page(status: int) -> str:
    """nginx's error page; ``samples/error-403-blocked.html.txt`` is the text of the 403 one."""
    title = GATEWAY_TITLES[status]
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n"
        "<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
    )


STYLE = """
body { font-family: -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       background: #f3f5f7; color: #1f2d3d; }
header { background: #1b2a4a; color: #fff; padding: 12px 24px;
         display: flex; gap: 24px; align-items: center; }
header a { color: #cfe0ff; }
header form { margin-left: auto; }
main { padding: 16px 24px; }
.board { display: flex; gap: 12px; overflow-x: auto; align-items: flex-start; }
.column { background: #e4e8ee; border-radius: 6px; min-width: 230px; max-width: 260px; padding: 8px; }
.column h2 { font-size: 14px; margin: 4px 4px 8px; border-bottom: 4px solid var(--c); padding-bottom: 6px; }
.column .sum { font-weight: normal; color: #5b6b7f; font-size: 12px; display: block; }
.card { background: #fff; border-radius: 4px; padding: 8px; margin-bottom: 8px; box-shadow: 0 1px 2px #0002; }
.card a { font-weight: 600; color: #1b2a4a; text-decoration: none; }
.card .meta { color: #5b6b7f; font-size: 12px; margin: 4px 0; }
.card form { display: flex; gap: 4px; }
.card select { flex: 1; font-size: 12px; }
table { border-collapse: collapse; background: #fff; margin-bottom: 16px; }
td, th { border: 1px solid #d5dbe3; padding: 6px 10px; text-align: left; font-size: 14px;
         vertical-align: top; }
th { background: #eef1f5; }
.pill { display: inline-block; padding: 1px 8px; border-radius: 10px; background: #eef1f5; font-size: 12px; }
.Approved { background: #d8f5d0; } .Rejected { background: #fbd9d9; } .Pending { background: #fff1c9; }
.box { background: #fff; padding: 16px; border-radius: 6px; max-width: 520px; }
"""


def layout(title: str, body: str, header_extra: str = "") -> str:
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<header><strong>Kommo sandbox</strong><a href='/board'>Board</a>{header_extra}</header>"
        f"<main>{body}</main></body></html>"
    )
