import base64
import re

from anpyc.report.html import Figure, Heading, Table, Text, render_html, render_markdown


def test_markdown_links_images_relative(tmp_path):
    png = tmp_path / "plots" / "a.png"
    png.parent.mkdir()
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    md = render_markdown([Heading("T", 1), Figure(png, "cap")], tmp_path)
    assert md.startswith("# T\n") and "![cap](plots/a.png)" in md


def test_html_embeds_images_and_escapes(tmp_path):
    png = tmp_path / "a.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\nfake")
    page = render_html([Heading("<T>", 1), Text("**x** `y` <script>"), Table(["h&"], [["<b>"]]), Figure(png, 'a "q"')])
    assert "<script>" not in page and "&lt;script&gt;" in page and "&lt;b&gt;" in page and "h&amp;" in page
    assert "<strong>x</strong> <code>y</code>" in page and "<title>&lt;T&gt;</title>" in page
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert [base64.b64decode(u) for u in uris] == [png.read_bytes()]
    assert "file:" not in page and "http" not in page.split("<body>")[1]  # nothing fetched
