"""Ingest on Ray: the build's batches embedded and committed by parallel workers.

The driver does what must happen once: it holds the store's write lock, plans (dedup
against the store), reserves every new id in one metadata write, and resolves
relations; then each batch goes to a Ray actor that loads the encoder once, embeds,
and appends the batch in one Lance commit (Lance merges concurrent appends). Ids are
fixed before any worker starts, so they stay unique across workers, and a build on
Ray gives the same ids and vectors as the in-process build.

A killed worker: Ray restarts the actor and retries its batch; the retry leaves out
ids its first attempt already committed. When retries run out the build ends with
one line naming the batches not written; committed batches stay, and running the same
command again plans only the missing concepts.

Plain Ray actors rather than Daft on Ray: bench/ingest_engines.py measured Daft's class
UDF 1.06x slower on the same plan and cluster, and Daft pins an older pyarrow than
LanceDB's (README, "Why Ray actors").

The same command runs on a real cluster with `--address ray://HOST:10001` or `auto`:
every node needs meqg installed and the store reachable (an s3:// store, or a path
all nodes share); AWS_*, HF_* and MEQG_* variables travel with the job.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import MeqgError
from ..progress import Progress
from .build import write_batch

FORWARDED_ENVIRONMENT = ("AWS_", "HF_", "MEQG_", "TOKENIZERS_PARALLELISM")
BATCHES_IN_FLIGHT = 2  # per worker: one embedding, one queued, so a worker never waits on the driver


@dataclass
class RayIngest:
    """Where and how wide to run: `address` None starts a local Ray cluster for this build."""

    make_embedder: Callable  # picklable; each worker calls it once
    address: str | None = None
    workers: int | None = None

    def __post_init__(self):
        """A `ray://` address needs Ray Client (grpcio): say so before anything is built."""
        if self.address and self.address.startswith("ray://") and importlib.util.find_spec("grpc") is None:
            raise MeqgError(
                f"--address {self.address} needs Ray Client, which is not installed: pip install 'ray[client]' "
                "(or use a cluster address without ray://, or none for a local cluster)"
            )

    def write(self, store, batches: list, config, summary, progress: Progress | None) -> None:
        """The build's `IngestEngine`: `write_on_ray` with these settings."""
        write_on_ray(store, batches, config, self, summary, progress)


class _Writer:
    """One Ray actor: the encoder, loaded once, and the store, opened once."""

    def __init__(self, store_uri: str, store_config, make_embedder: Callable):
        from .store import ConceptStore

        self.store = ConceptStore.open(store_uri, store_config)
        self.embedder = make_embedder()
        self.centroids = self.store.domain_centroids()

    def write(self, batch) -> tuple[int, float, float]:
        return write_batch(self.store, batch, self.embedder, self.centroids, take_lock=False, skip_stored=True)


def start_local_ray(address: str | None = None) -> bool:
    """Join the cluster at `address`, or start a quiet local one; returns whether this call started Ray."""
    import ray

    if ray.is_initialized():
        return False
    environment = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENVIRONMENT)}
    with warnings.catch_warnings():  # Ray fork-execs its daemons: nothing of lancedb's runs in the child
        warnings.filterwarnings("ignore", "lancedb fork support", RuntimeWarning)
        ray.init(
            address=address,
            num_cpus=os.cpu_count() if address is None else None,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
            runtime_env={"env_vars": environment},
        )
    return True


def write_on_ray(store, batches: list, config, ingest: RayIngest, summary, progress: Progress | None) -> None:
    """Write `batches` (build.planned_batches) through Ray actors; the caller holds the store's write lock."""
    try:
        import ray
    except ImportError:
        raise MeqgError("--engine ray needs Ray: pip install 'meqg[ray]'") from None
    from ray.exceptions import RayError

    started_here = start_local_ray(ingest.address)
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        count = max(1, min(ingest.workers or cpus, len(batches)))
        threads = str(max(1, cpus // count))
        actor = ray.remote(max_restarts=2, max_task_retries=2)(_Writer).options(
            num_cpus=1, runtime_env={"env_vars": {"OMP_NUM_THREADS": threads, "OPENBLAS_NUM_THREADS": threads}}
        )
        writers = [actor.remote(store.uri, config, ingest.make_embedder) for _ in range(count)]
        total, queue, pending, failed = sum(map(len, batches)), list(reversed(batches)), {}, []

        def submit(writer) -> None:
            if queue:
                batch = queue.pop()
                pending[writer.write.remote(batch)] = (writer, batch)

        for writer in writers:
            for _ in range(BATCHES_IN_FLIGHT):
                submit(writer)
        if progress:
            progress(f"embedding and writing on Ray ({count} workers)", 0, total)
        while pending:
            (done,), _ = ray.wait(list(pending), num_returns=1)
            writer, batch = pending.pop(done)
            try:
                written, embed_seconds, write_seconds = ray.get(done)
            except RayError as exc:
                failed.append((batch, str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__))
            else:
                summary.added += written
                summary.embed_seconds += embed_seconds
                summary.write_seconds += write_seconds
                submit(writer)
            if progress:
                progress(f"embedding and writing on Ray ({count} workers)", summary.added, total)
        if failed:
            rows = sum(len(batch) for batch, _ in failed)
            raise MeqgError(
                f"{len(failed)} batches ({rows} concepts) were not written: {failed[0][1]}; "
                "run the same command again to add them"
            )
    finally:
        store.refresh()  # the workers' commits
        if started_here:
            ray.shutdown()
