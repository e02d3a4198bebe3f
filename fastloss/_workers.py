"""Work handed out to worker processes, one item at a time as each becomes free."""
import os
import selectors
import subprocess
import sys
import tempfile


def run_in_workers(script, args, items, workers=None, on_done=None):
    """Run ``python -c script *args`` in ``workers`` processes (default: one per core) and
    hand them ``items`` in order, one line on a worker's stdin each; a worker echoes a
    line on its stdout when it has finished an item, and is then handed the next.

    A fixed split would leave one worker busy long after the others when the items'
    costs differ.  ``on_done(item)`` is called as each finishes.  A worker that fails
    raises RuntimeError with the end of its stderr.
    """
    workers = max(1, workers or os.cpu_count() or 1)
    pending = iter(items)
    selector = selectors.DefaultSelector()
    procs = {}                                  # worker -> (the file of its stderr, its item)
    for _ in range(workers):
        item = next(pending, None)
        if item is None:
            break
        errors = tempfile.TemporaryFile(mode="w+")
        proc = subprocess.Popen([sys.executable, "-c", script, *args], text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors)
        procs[proc] = [errors, item]
        proc.stdin.write(item + "\n")
        proc.stdin.flush()
        selector.register(proc.stdout, selectors.EVENT_READ, proc)
    running = set(procs)
    while running:
        for key, _ in selector.select():
            proc = key.data
            finished = proc.stdout.readline()
            if finished and on_done is not None:
                on_done(procs[proc][1])
            item = next(pending, None) if finished else None
            if item is not None:
                procs[proc][1] = item
                proc.stdin.write(item + "\n")
                proc.stdin.flush()
                continue
            selector.unregister(proc.stdout)
            proc.stdin.close()
            running.discard(proc)
    for proc, (errors, item) in procs.items():
        with errors:
            if proc.wait():
                errors.seek(0)
                raise RuntimeError(f"a worker failed (at {item!r}):\n" + errors.read()[-2000:])
