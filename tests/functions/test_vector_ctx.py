"""``ctx.vector_search`` as functions see it: in actions only, over the deployment's data."""

from __future__ import annotations

from typing import Any

import pytest

from syncline.errors import InvalidQuery

FILES = {
    "schema.py": """
        from syncline import define_schema, define_table, v

        schema = define_schema({
            "foods": define_table({
                "description": v.string(),
                "cuisine": v.string(),
                "embedding": v.array(v.float64()),
            }).vector_index(
                "by_embedding", vector_field="embedding", dimensions=3,
                filter_fields=["cuisine"],
            ),
        })
    """,
    "foods.py": """
        from syncline import action, internal_query, mutation, query, v


        @mutation(args={"description": v.string(), "cuisine": v.string(),
                        "embedding": v.array(v.float64())})
        def add(ctx, description, cuisine, embedding):
            return ctx.db.insert("foods", {"description": description, "cuisine": cuisine,
                                           "embedding": embedding})


        @internal_query(args={"ids": v.array(v.id("foods"))})
        def fetch(ctx, ids):
            return [ctx.db.get(i)["description"] for i in ids]


        @action(args={"vector": v.array(v.float64()), "cuisines": v.array(v.string())})
        async def similar(ctx, vector, cuisines):
            results = await ctx.vector_search(
                "foods", "by_embedding", vector=vector, limit=2,
                filter=(lambda q: q.or_(*(q.eq("cuisine", c) for c in cuisines)))
                if cuisines else None,
            )
            names = await ctx.run_query("foods:fetch", {"ids": [r["_id"] for r in results]})
            return [[name, round(r["_score"], 4)] for name, r in zip(names, results)]


        @query
        def in_query(ctx):
            return ctx.vector_search("foods", "by_embedding", vector=[1.0, 0.0, 0.0])


        @mutation
        def in_mutation(ctx):
            return ctx.vector_search("foods", "by_embedding", vector=[1.0, 0.0, 0.0])
    """,
}


def _seed(backend: Any) -> None:
    for description, cuisine, embedding in [
        ("croissant", "french", [1.0, 0.0, 0.0]),
        ("baguette", "french", [0.9, 0.1, 0.0]),
        ("rendang", "indonesian", [0.8, 0.0, 0.2]),
        ("sushi", "japanese", [0.0, 1.0, 0.0]),
    ]:
        backend.mutation(
            "foods:add", {"description": description, "cuisine": cuisine, "embedding": embedding}
        )


def test_an_action_searches_and_loads_the_documents(make_backend: Any) -> None:
    backend = make_backend(FILES)
    _seed(backend)
    assert backend.action("foods:similar", {"vector": [1.0, 0.0, 0.0], "cuisines": []}) == [
        ["croissant", 1.0],
        ["baguette", 0.9939],
    ]
    got = backend.action(
        "foods:similar", {"vector": [1.0, 0.0, 0.0], "cuisines": ["indonesian", "japanese"]}
    )
    assert got == [["rendang", 0.9701], ["sushi", 0.0]]


def test_a_write_is_searchable_in_the_next_action(make_backend: Any) -> None:
    backend = make_backend(FILES)
    _seed(backend)
    backend.mutation(
        "foods:add", {"description": "miso", "cuisine": "japanese", "embedding": [0.0, 0.0, 1.0]}
    )
    got = backend.action("foods:similar", {"vector": [0.0, 0.0, 1.0], "cuisines": ["japanese"]})
    assert got[0] == ["miso", 1.0]


@pytest.mark.parametrize("path", ["foods:in_query", "foods:in_mutation"])
def test_vector_search_outside_an_action_is_a_clear_error(make_backend: Any, path: str) -> None:
    backend = make_backend(FILES)
    call = backend.query if path.endswith("query") else backend.mutation
    with pytest.raises(InvalidQuery) as info:
        call(path)
    assert info.value.code == "VectorSearchNotInAction"
    assert "only available in actions" in info.value.message
