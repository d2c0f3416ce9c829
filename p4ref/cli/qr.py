"""QR codes drawn in a terminal with half blocks (``p4 id --qr``, ``p4 pair invite``)."""

from __future__ import annotations

__all__ = ["qr_matrix", "render_qr"]


def qr_matrix(text: str, *, border: int = 4, error_correction: str = "M") -> list[list[bool]]:
    """The module matrix of ``text`` (True = dark), quiet zone included."""
    import qrcode  # deferred: only the commands that draw one pay for it

    levels = {
        "L": qrcode.constants.ERROR_CORRECT_L,
        "M": qrcode.constants.ERROR_CORRECT_M,
        "Q": qrcode.constants.ERROR_CORRECT_Q,
        "H": qrcode.constants.ERROR_CORRECT_H,
    }
    qr = qrcode.QRCode(border=border, error_correction=levels[error_correction])
    qr.add_data(text)
    qr.make(fit=True)
    matrix: list[list[bool]] = qr.get_matrix()
    return matrix


def render_qr(text: str, *, light_background: bool = False, stream: object = None,
              border: int = 4, error_correction: str = "M") -> str:
    """``text`` as a QR code drawn with half blocks, two module rows per text line.

    By default light modules are drawn (█) and dark ones left blank, which reads correctly on the
    usual light-on-dark terminal; ``light_background`` swaps that. Falls back to ``##`` cells
    when the output encoding has no block characters. The quiet zone is ``border`` modules (4 in
    ISO 18004; phone scanners read a screen with 1, which ``p4 pair invite`` uses to fit 80×24).
    """
    matrix = qr_matrix(text, border=border, error_correction=error_correction)
    # "ink" = the cells we draw in the terminal's foreground colour
    ink = [[cell if light_background else not cell for cell in row] for row in matrix]
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        "█▀▄".encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return "".join("".join("##" if c else "  " for c in row) + "\n" for row in ink)
    if len(ink) % 2:
        ink.append([not light_background] * len(ink[0]))
    glyph = {(False, False): " ", (True, False): "▀", (False, True): "▄", (True, True): "█"}
    lines = []
    for top, bottom in zip(ink[0::2], ink[1::2], strict=True):
        lines.append("".join(glyph[(t, b)] for t, b in zip(top, bottom, strict=True)) + "\n")
    return "".join(lines)
