#!/bin/sh
# A cloud-init user-data that is a script: it runs like run_cmd.
echo "configured by script" > /run/script-marker
