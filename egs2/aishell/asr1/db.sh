# shellcheck shell=bash
# Where the AiShell-1 corpus lives: the directory that holds data_aishell/.
# Override without editing: AISHELL=/path/to/corpus ./run.sh
AISHELL=${AISHELL:-downloads}
