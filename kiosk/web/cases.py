"""The cases and their slots: what each slot should hold (planogram) and its piece (SKU, price, photo).

A manager taps a slot on the store page and sets its piece on the slot's page. The slot page has an
``actions`` block for what else a case or slot offers (e.g. enrolment, added later).
"""
from __future__ import annotations

import math

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from kiosk.config import STATES
from kiosk.history_pieces import MAX_PHOTO_BYTES, photo_type
from kiosk.web.guard import Refused, action, back, page
from kiosk.words import case_shape, slot_words

MAX_SKU = 64
MAX_PRICE = 10_000_000


def _key(request: Request) -> tuple[str, str, str]:
    key = tuple(request.path_params[k] for k in ("device", "camera", "slot"))
    engine = request.app.state.kiosk.engine
    if key[:2] not in engine.cases or (key not in engine.planogram and key not in engine.slots):
        raise Refused(404, f"no slot {'/'.join(key)} in this store")
    return key  # type: ignore[return-value]


@action("edit the planogram")
async def planogram(request: Request, data: dict) -> Response:
    key = tuple(str(data.get(k, "")) for k in ("device", "camera", "slot"))
    kiosk = request.app.state.kiosk
    slot = kiosk.set_expected(key, str(data.get("expected", "")), request.user.name)  # type: ignore[arg-type]
    return back(request, slot, "/")


async def slot_page(request: Request) -> Response:
    kiosk = request.app.state.kiosk
    key = _key(request)
    with kiosk.lock:
        slot = kiosk.engine.slot_dict(key)
        names = [k[2] for k in kiosk.engine.slots if k[:2] == key[:2]]
        title = kiosk.engine.case_title(key[:2])
    return page(request, "slot.html", slot=slot, where=f"{title}, {slot_words(key[2], *case_shape(names))}",
                piece=kiosk.history.piece(key), classes=kiosk.classes(key[:2]), states=STATES,
                csrf=request.user.csrf)


def _price(text: str) -> float | None:
    text = text.strip().replace("'", "").replace(",", ".")
    if not text:
        return None
    try:
        price = float(text)
    except ValueError:
        raise Refused(400, f"price {text[:20]!r} is not a number (e.g. 1250.00)") from None
    if not math.isfinite(price) or not 0 <= price <= MAX_PRICE:
        raise Refused(400, f"price {text[:20]!r} must be between 0 and {MAX_PRICE}")
    return round(price, 2)


@action("set a slot's piece")
async def set_piece(request: Request, data: dict) -> Response:
    key = _key(request)
    sku = str(data.get("sku", "")).strip()
    if len(sku) > MAX_SKU:
        raise Refused(400, f"SKU is {len(sku)} characters; at most {MAX_SKU}")
    photo = None
    upload = data.get("photo")
    if isinstance(upload, UploadFile) and upload.filename:
        blob = await upload.read(MAX_PHOTO_BYTES + 1)
        if len(blob) > MAX_PHOTO_BYTES:
            raise Refused(413, f"photo over {MAX_PHOTO_BYTES} bytes")
        media = photo_type(blob)
        if media is None:
            raise Refused(400, "photo is not a JPEG, PNG or WebP picture")
        photo = (blob, media)
    price = _price(str(data.get("price", "")))
    slot = request.app.state.kiosk.set_piece(key, str(data.get("expected", "")), sku, price, photo, request.user.name)
    return back(request, slot, "/")


async def photo(request: Request) -> Response:
    found = request.app.state.kiosk.history.piece_photo(_key(request))
    if found is None:
        raise Refused(404, "this slot's piece has no photo")
    return Response(found[0], media_type=found[1], headers={"cache-control": "private, max-age=60"})


SLOT = "/slots/{device}/{camera}/{slot}"
routes = [
    Route("/planogram", planogram, methods=["POST"]), Route("/api/planogram", planogram, methods=["POST"]),
    Route(SLOT, slot_page), Route(SLOT, set_piece, methods=["POST"]), Route("/api" + SLOT, set_piece, methods=["POST"]),
    Route(SLOT + "/photo", photo),
]
