# The extension of the component "stage": an object made once with the component.
# Promoted, so its capitalised members are the component's own: parent.Stage.Level().

class StageExt:
    def __init__(self, ownerComp):
        self.ownerComp = ownerComp
        self.dark = False

    def Level(self):
        return 0.0 if self.dark else 1.0

    def Blackout(self, on=True):
        self.dark = on
