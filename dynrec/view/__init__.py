"""``dynrec view WORK``: an interactive viser viewer of a reconstruction (:mod:`dynrec.view.server`)."""
