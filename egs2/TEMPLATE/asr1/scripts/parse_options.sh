# shellcheck shell=bash
# Parse ESPnet-style options into shell variables; source it after the defaults are set.
#
#   --name value   or   --name=value   sets ${name} (dashes in the name become underscores)
#   --help | -h    prints ${help_message} and exits 0
#
# Only variables that already exist can be set, so a mistyped option is an error, not a
# silent new variable. A variable whose default is true/false only accepts true/false.
# Parsing stops at the first argument that is not an option; the caller decides what to do
# with what is left in "$@".

__po_fail() {
    echo "$(basename "$0"): $*" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        -h | --help)
            echo "${help_message:-no help available}"
            exit 0
            ;;
        --*=*)
            __po_name=${1%%=*}
            __po_value=${1#*=}
            shift
            ;;
        --*)
            [ $# -ge 2 ] || __po_fail "option $1 needs a value"
            __po_name=$1
            __po_value=$2
            shift 2
            ;;
        *)
            break
            ;;
    esac
    __po_name=${__po_name#--}
    __po_name=${__po_name//-/_}
    if ! [[ "${__po_name}" =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] \
        || ! declare -p "${__po_name}" >/dev/null 2>&1 \
        || [[ "${__po_name}" == __po_* ]]; then
        __po_fail "unknown option --${__po_name} (see --help)"
    fi
    case "${!__po_name}" in
        true | false)
            case "${__po_value}" in
                true | false) ;;
                *) __po_fail "--${__po_name} takes true or false (got '${__po_value}')" ;;
            esac
            ;;
    esac
    printf -v "${__po_name}" '%s' "${__po_value}"
done
unset __po_name __po_value
