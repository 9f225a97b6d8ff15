"""Take a reconstruction elsewhere: files other tools open (``dynrec export``) and
novel-view videos (``dynrec render``)."""
