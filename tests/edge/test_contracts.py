"""The values packages agree on, and the schema files that spell some of them again."""
import re

from edge.config.device import CameraConfig, SlotConfig
from edge.contracts import DEFAULT_CLASSES, ID_PATTERN, REQUIRED_STAGES, STAGES, max_batch_for
from edge.link import messages


def test_schemas_spell_the_id_pattern_and_stages_of_the_contracts():
    for kind in messages.KINDS:
        assert messages.load_schema(kind)["$defs"]["id"]["pattern"] == ID_PATTERN
    latencies = messages.load_schema("labels")["properties"]["latencies_ms"]
    assert tuple(latencies["required"]) == REQUIRED_STAGES
    assert set(REQUIRED_STAGES) < set(STAGES) and {"publish", "total"} <= set(STAGES)


def test_id_pattern():
    assert re.match(ID_PATTERN, "case-01.cam_0") and not re.match(ID_PATTERN, "case/01")
    assert not re.match(ID_PATTERN, "-x") and not re.match(ID_PATTERN, "a" * 65)


def test_max_batch_is_every_slot_of_every_camera():
    slots = tuple(SlotConfig(name=f"s{i}", rect=(i / 5, 0, (i + 1) / 5, 1)) for i in range(5))
    cams = [CameraConfig(id="a", source="file:///a.mp4", slots=slots), CameraConfig(id="b", source="file:///b.mp4")]
    assert max_batch_for(cams) == 6
    assert max_batch_for([]) == 1


def test_default_classes_end_with_empty():
    assert DEFAULT_CLASSES[-1] == "empty" and len(set(DEFAULT_CLASSES)) == len(DEFAULT_CLASSES) == 8


def test_status_states_are_the_ones_emitted():
    assert tuple(messages.load_schema("status")["properties"]["state"]["enum"]) == messages.STATES
    heartbeat_states = messages.load_schema("heartbeat")["properties"]["cameras"]["additionalProperties"]
    assert heartbeat_states["properties"]["state"]["enum"] == [*messages.STATES, None]
