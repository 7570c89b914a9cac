# Callbacks of timer1 in config/show-network.toml: a 10-second cue that brings the house
# lights down at its start and back up when it is done, as a TouchDesigner Timer CHOP's
# callbacks DAT would.

def onStart(timerOp):
    op('house').par.value0 = 0.2


def onDone(timerOp, segment, interrupt):
    op('house').par.value0 = 1.0
