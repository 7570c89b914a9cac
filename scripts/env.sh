# Sourced by the scripts: build against the python3 on PATH (the one numpy was installed for),
# never another libpython on the machine (see README, "Python").
PYO3_PYTHON="$(python3 -c 'import sys; print(sys.executable)')"
export PYO3_PYTHON
