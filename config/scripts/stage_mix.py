# The Script CHOP inside /project1/stage: its input's channels scaled by their gain in the
# table DAT `levels` and by the component's Master, shaped by its Curve menu, unless the
# extension has blacked the stage out.

def onCook(scriptOp):
    scriptOp.copy(scriptOp.inputs[0])
    stage = parent.Stage            # the component, by its Parent Shortcut (= parent())
    level = stage.par.Master.eval() * stage.Level()   # Level() is the promoted extension's
    square = stage.par.Curve == 'square'
    levels = op('levels')           # the sibling table DAT
    for chan in scriptOp.chans():
        cell = levels[chan.name, 'gain']
        gain = float(cell) if cell is not None else 1.0
        for i in range(len(chan)):
            v = chan[i] * gain * level
            chan[i] = v * v if square else v
