"""Probe a checkpoint: upload weights in any accepted format, see what was detected, analyse it as a run."""

from ui.page import header
from ui.upload_ui import checkpoint_widgets, import_block, report_view

header("probe", "Probe a checkpoint", icon=":material/search:",
       caption="Bring your own weights: the checkpoint becomes a run in your workspace that every analysis page "
               "can open. Files are checked before anything is loaded, and nothing in them is executed.")
upload = checkpoint_widgets()  # (file name, bytes, ProbeSettings) or None
if upload is not None:
    import_block(*upload)
report_view()
