"""The CLI's sub-commands, one module each (``configure(parser)``, ``run(args)``), named for
the command's words (`iotpipe board deploy`: ``board_deploy.py``), plus what composes parts
for one of them (``supervise.py`` for `up`, ``announcer.py`` for `announce`). The mechanisms
they start live in the parts (``iotpipe/bridge``, ``iotpipe/dashboard``, …)."""
