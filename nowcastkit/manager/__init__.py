"""The manager: answers every worker message, keeps the checklist, launches what comes next.

    python -m nowcastkit.manager nowcast.yaml [--ignore-checklist]

Who owns what (the path of one message is in :mod:`.decide`):

- :mod:`.decide`: what a message does, as a value (pure but for ``after_<worker>``);
- :mod:`nowcastkit.race`: race-condition groups, as values;
- :mod:`.ledger`: the store, the checklist and the race groups; commits a batch;
- :mod:`.checklist_file`: when and what the checklist file is written;
- :mod:`.supervisor`: the runs going now, through a launcher (:mod:`.launchers`);
- :mod:`.events`: the monitor feed;
- :mod:`.process`: the sockets, the signals and the loop.
"""

from nowcastkit.manager.decide import MANAGER_REPLIES
from nowcastkit.manager.process import ManagerProcess, main

__all__ = ["MANAGER_REPLIES", "ManagerProcess", "main"]
