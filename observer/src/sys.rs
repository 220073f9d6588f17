//! Small facts about the running system: privilege, kallsyms, slab caches, tracefs.
