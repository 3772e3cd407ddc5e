"""Builds one outlines-core Index in a child process: a runaway build is killed at the deadline.

Run as a script by path (importing nothing of `constrained`, so it starts in ~0.1 s). Reads two pickles
from stdin, the Vocabulary and (regex, eos id, memory cap in bytes); writes one pickle to stdout:
(True, (index, terminal states)) or (False, error message). A terminal state is final and allows EOS alone.
"""

import pickle
import resource
import sys

from outlines_core import Index


def main() -> None:
    vocabulary = pickle.load(sys.stdin.buffer)
    regex, eos_token_id, memory_cap = pickle.load(sys.stdin.buffer)
    resource.setrlimit(resource.RLIMIT_AS, (memory_cap, memory_cap))
    try:
        index = Index(regex, vocabulary)
        terminal = frozenset(s for s in index.get_final_states() if index.get_allowed_tokens(s) == [eos_token_id])
        result = (True, (index, terminal))
    except (ValueError, MemoryError) as exc:
        result = (False, str(exc))
    pickle.dump(result, sys.stdout.buffer)


if __name__ == "__main__":
    main()
