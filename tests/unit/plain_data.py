"""Hypothesis strategies for plain data: what messages and the checklist carry."""

from __future__ import annotations

import datetime

from hypothesis import strategies as st

# Text that YAML can carry: no surrogates (not encodable) and no other unencodable points.
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=20)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | texts
    | st.dates()
    | st.datetimes(timezones=st.just(datetime.UTC))
)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(texts, children, max_size=4),
    max_leaves=15,
)
