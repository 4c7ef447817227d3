"""The ``collect`` section of the device config: keeping slot crops of enrolled pieces as training photos."""
from __future__ import annotations

from pathlib import Path

from pydantic import ConfigDict, Field

from edge.validation import Strict


class CollectConfig(Strict):
    """Collection of training photos from the case (docs/slot-states.md, "Collecting training photos").

    Off by default: a store turns it on here, from the kiosk ("Collect training photos from this case") or with
    ``gemsight-edge collect``. Only crops of enrolled slots whose piece is present and still are kept, never a
    whole frame and never a crop with a hand over it.
    """

    # and Strict's: no unknown field, frozen; no bool read as a number, no number given as a string.
    model_config = ConfigDict(strict=True)

    enabled: bool = Field(False, description="Collect from start-up (a kiosk or `gemsight-edge collect` request "
                                             "turns it on or off while the device runs).")
    dir: Path | None = Field(None, strict=False,
                             description="Where crops are kept, in the trainer's layout (`<class>/*.jpg` and "
                                         "`manifest.jsonl`); default `collect/` in `states.state_dir`.")
    every_s: float = Field(600.0, ge=1, le=86400, description="A slot gives at most one crop every this many "
                                                             "seconds (the video's time for files).")
    max_cosine: float = Field(0.97, gt=0, le=1, description="A crop whose embedding has at least this cosine to "
                                                            "one the slot already kept is a near-duplicate ...")
    min_light_change: float = Field(12.0, ge=0, le=255, description="... unless its mean brightness differs from "
                                                                   "that crop's by at least this (0-255 grey "
                                                                   "levels): the day's light is what crops must vary "
                                                                   "in. 0: the embedding alone decides.")
    per_slot_per_day: int = Field(24, ge=1, le=10000, description="Crops a slot may keep per day (the device's "
                                                                  "local day).")
    retention_days: float = Field(30.0, gt=0, le=3650, description="Crops older than this many days are removed.")
    max_bytes: int = Field(2 << 30, ge=1 << 20, description="The collect folder's largest size; reaching it stops "
                                                            "collection (one warning), never the loop.")
    min_free_bytes: int = Field(512 << 20, ge=0, description="Free space that must remain on the disk; below it "
                                                             "collection stops (one warning), never the loop.")
    jpeg_quality: int = Field(92, ge=50, le=100, description="JPEG quality of the kept crops.")
