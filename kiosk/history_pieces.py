"""The pieces in the cases: per slot, the SKU, the price and an optional photo, as a manager set them.

The class a slot should hold stays in the planogram (:meth:`History.set_planogram`); a piece adds what
a count needs to say what is missing in money, and what a person needs to recognise it. Photos are
JPEG, PNG or WebP (checked by their first bytes), at most ``MAX_PHOTO_BYTES``, kept in the database.
"""
from __future__ import annotations

from typing import Any

MAX_PHOTO_BYTES = 2 << 20
PHOTO_TYPES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"RIFF", "image/webp"))


def photo_type(data: bytes) -> str | None:
    """The media type of a photo from its first bytes (JPEG, PNG, WebP), or ``None``."""
    for magic, kind in PHOTO_TYPES:
        if data.startswith(magic) and (kind != "image/webp" or data[8:12] == b"WEBP"):
            return kind
    return None


class PiecesMixin:
    """Pieces of :class:`~kiosk.history.History` (needs ``_exec`` and ``_rows``)."""

    def set_piece(self, key: tuple[str, str, str], sku: str, price: float | None, photo: bytes | None,
                  media: str | None, ts: float, user: str) -> None:
        """Keep a slot's piece (``photo`` ``None``: keep the one it has)."""
        old = self.piece(key)
        if photo is None and old is not None:
            photo, media = self.piece_photo(key) or (None, None)
        self._exec("INSERT OR REPLACE INTO pieces (device, camera, slot, sku, price, photo, media, ts, user) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [*key, sku, price, photo, media, ts, user])

    def piece(self, key: tuple[str, str, str]) -> dict[str, Any] | None:
        """A slot's piece without its photo (``has_photo`` says whether there is one), or ``None``."""
        rows = self._rows("SELECT device, camera, slot, sku, price, media IS NOT NULL AS has_photo, ts, user "
                          "FROM pieces WHERE device = ? AND camera = ? AND slot = ?", list(key))
        return rows[0] if rows else None

    def pieces(self) -> dict[tuple[str, str, str], dict[str, Any]]:
        """Every slot's piece (no photos)."""
        rows = self._rows("SELECT device, camera, slot, sku, price, media IS NOT NULL AS has_photo FROM pieces")
        return {(r["device"], r["camera"], r["slot"]): r for r in rows}

    def piece_photo(self, key: tuple[str, str, str]) -> tuple[bytes, str] | None:
        """``(bytes, media type)`` of a slot's photo, or ``None``."""
        rows = self._rows("SELECT photo, media FROM pieces WHERE device = ? AND camera = ? AND slot = ? "
                          "AND photo IS NOT NULL", list(key))
        return (bytes(rows[0]["photo"]), rows[0]["media"]) if rows else None
