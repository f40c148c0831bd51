"""``pipeline``: reassemble → validate → decode → meter → route, fused into one hop.

The very stages the separate operators lift (``_stage.py``: one implementation, wired
the same way), chained directly: each stage calls the next as a plain function instead of
through an Rx observer, which saves two Python calls per stage and frame
(docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Callable

from reactivex import Observable

from ..codec import Codec, Decoded
from ..errors import FrameError
from ..frames import Frame
from ..metrics import Metrics
from ..router import Router
from ._decode import decode_stage
from ._meter import meter_stage
from ._reassemble import reassemble_stage
from ._route import route_stage
from ._stage import fuse
from ._validate import validate_stage


def pipeline_(
    codec: Codec,
    metrics: Metrics,
    router: Router,
    max_message_bytes: int,
) -> Callable[[Observable[Frame | FrameError]], Observable[Decoded]]:
    # Stage state is built per subscription: a reconnect starts with fresh reassembly.
    return fuse(
        reassemble_stage(max_message_bytes),
        validate_stage(None),
        decode_stage(codec),
        meter_stage(metrics),
        route_stage(router),
        names=STAGES,
    )


#: The names a :class:`~rxalpaca.metrics.StageProfile` knows the fused stages by; the
#: last is what the pipeline emits into (the client's control path).
STAGES = ("reassemble", "validate", "decode", "meter", "route", "control")
