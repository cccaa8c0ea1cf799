"""Text that came from the network, made safe to print inside Rich markup.

A DHCP host name, a vendor class or an installer's stage message is chosen by whoever sends the packet: ``[/x]``
in it would be read as a Rich closing tag (and raise, ending a live view), ``\\x1b[2J`` would clear the terminal.
Everything such a peer chose passes through ``wire_text`` before it reaches a table or a live view.
"""

from __future__ import annotations

import re

from rich.markup import escape

# C0 controls (with ESC), DEL and the C1 range (which some terminals also obey); tabs and newlines included,
# since a table cell is one line.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def wire_text(value: object) -> str:
    """``value`` as plain text in Rich markup: controls replaced by ``?``, markup escaped; None or "" is ``-``."""
    if value is None or value == "":
        return "-"
    return escape(_CONTROL.sub("?", str(value)))
