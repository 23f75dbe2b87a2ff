"""The long-running service: the scheduler that runs flows (`service`), the Prometheus
metrics (`metrics`) and the systemd notifications (`sdnotify`).

May import the cycle and everything below it; never the command line (which starts it).
"""
