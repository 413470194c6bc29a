"""What the identities table remembers is bounded: stitching keeps the small traits it needs."""

from __future__ import annotations

import orjson
from hypothesis import given
from hypothesis import strategies as st

from signal_sync.planner import REMEMBERED_MAX_BYTES, bounded_traits, remember
from tests.property.profiles import PROFILE
from tests.unit.factories import event

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=300),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=20,
)


@PROFILE
@given(traits=st.dictionaries(st.text(max_size=20), JSON, max_size=30), max_bytes=st.integers(2, 3_000))
def test_bounded_traits_fit_and_leave_out_the_largest_values_first(traits: dict, max_bytes: int) -> None:
    kept = bounded_traits(traits, max_bytes)
    assert len(orjson.dumps(kept)) <= max_bytes
    assert all(traits[name] == value for name, value in kept.items())
    if len(orjson.dumps(traits)) <= max_bytes:
        assert kept == traits
    left_out = set(traits) - set(kept)
    if left_out and kept:  # nothing kept is larger than what was left out
        size = {name: len(orjson.dumps({name: value})) for name, value in traits.items()}
        assert max(size[name] for name in kept) <= min(size[name] for name in left_out)


def test_remember_keeps_the_email_and_names_of_an_identify_with_a_huge_trait() -> None:
    store: dict[str, dict] = {}
    traits = {"email": "jane@example.com", "first_name": "Jane", "bio": "x" * 900_000}
    ev = event(type="identify", anonymousId="a1", userId="u1", traits=traits)
    remember(store, ev, traits)
    assert store["a:a1"] == store["u:u1"] == {"email": "jane@example.com", "first_name": "Jane"}
    assert len(orjson.dumps(store["a:a1"])) <= REMEMBERED_MAX_BYTES
