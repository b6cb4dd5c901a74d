"""The store screen of `meqg app` on the small real store: stats, a live search, a concept and its
typed relations followed and walked back, all by keyboard; a missing store is a message."""

from meqg_mlx.concepts.search import search_subjects

from .conftest import shown, wait_for, workbench

SIZE = (160, 48)


def a_function_with_relations(store):
    """A code concept that is its own search subject and has outgoing relations."""
    table = store.columns(["concept_id", "kind", "text"])
    for concept_id, kind, text in zip(*(table[c].to_pylist() for c in ("concept_id", "kind", "text"))):
        if kind == "code" and "(" in text.splitlines()[0] and len(store.neighbors(concept_id)) >= 2:
            return concept_id, text
    raise AssertionError("the small store has no function with two relations")


async def test_search_finds_a_concept_and_its_relations_are_followed_and_walked_back(
    workbench_dir, small_store, embedder
):
    concept_id, text = a_function_with_relations(small_store)
    query = text.splitlines()[0]
    app = workbench()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.store is not None, what="the store did not open")
        stats = shown(app.query_one("#store-stats"))
        assert f"{small_store.count():,} concepts" in stats and "index exact" in stats
        assert app.focused is app.query_one("#query")
        await pilot.press(*query)
        await wait_for(pilot, lambda: screen.last_search.get("query") == query, what="no search results")
        table = app.query_one("#hits")
        expected = [hit.subject.concept_id for hit in search_subjects(small_store, embedder.encode([query])[0], 20)]
        assert [int(table.get_row_at(i)[0]) for i in range(table.row_count)] == expected
        assert expected[0] == concept_id  # its own first line finds it first
        assert f"{len(expected)} hits for {query!r}" in shown(app.query_one("#search-status"))

        await pilot.press("enter", "enter")  # into the hits, then open the first
        await wait_for(pilot, lambda: screen.concept_id == concept_id)
        view = shown(app.query_one("#concept"))
        assert f"#{concept_id}" in view and query in view and "source stdlib" in view
        neighbors = small_store.neighbors(concept_id)
        relations = app.query_one("#relations")
        assert relations.option_count == len(neighbors)
        assert app.focused is relations

        kind, _, target = neighbors[1]
        await pilot.press("down", "enter")  # follow the second relation
        await wait_for(pilot, lambda: screen.concept_id == target["concept_id"])
        assert f"#{target['concept_id']}" in shown(app.query_one("#concept")) and "1 deep" in shown(
            app.query_one("#concept")
        )
        await pilot.press("backspace")
        await wait_for(pilot, lambda: screen.concept_id == concept_id)
        assert screen.path == []


async def test_a_newer_query_replaces_an_older_one(workbench_dir):
    app = workbench()
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: screen.store is not None)
        await pilot.press(*"sort a list")
        await pilot.press(*" in place")
        await wait_for(pilot, lambda: screen.last_search.get("query") == "sort a list in place")
        await wait_for(pilot, lambda: not any(w.group == "search" and w.is_running for w in app.workers))
        assert screen.last_search["query"] == "sort a list in place"
        for _ in "sort a list in place":
            await pilot.press("backspace")
        await wait_for(pilot, lambda: app.query_one("#hits").row_count == 0)


async def test_a_missing_store_is_a_message_not_a_crash(workbench_dir):
    app = workbench(store="no-such-store")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "store not opened" in shown(app.query_one("#store-stats")))
        assert "no-such-store" in shown(app.query_one("#store-stats"))
        await pilot.press(*"anything")  # typing into a screen without a store does nothing
        assert app.query_one("#hits").row_count == 0


def test_store_screen_snapshot(workbench_dir, sentence_store_path, snap_compare):
    # the sentence store: its stats hold no doctest outcomes, which a busy machine may turn into timeouts
    (workbench_dir / "store").unlink()
    (workbench_dir / "store").symlink_to(sentence_store_path)

    async def opened(pilot):
        await wait_for(pilot, lambda: pilot.app.screen.index_ready)
        await pilot.pause()

    assert snap_compare(workbench(), terminal_size=SIZE, run_before=opened)
