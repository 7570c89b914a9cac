# Gain: every channel of input 0 times the custom parameter Gain.
# numpy does the work on the output's own memory: no Python object per sample.

def onSetupParameters(scriptOp):
    page = scriptOp.appendCustomPage('Custom')
    p = page.appendFloat('Gain', label='Gain')[0]
    p.default = 1
    p.normMin = 0
    p.normMax = 4

def onPulse(par):
    return

def onCook(scriptOp):
    scriptOp.copy(scriptOp.inputs[0])
    scriptOp.numpyArray()[:] *= scriptOp.par.Gain.eval()
