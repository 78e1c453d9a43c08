# Sourced by egs2/<corpus>/asr1/run.sh with the recipe's arguments ("$@").
# Picks the training config from the one-word model switch and leaves every other option
# in the array `args` for the stage driver:
#   --model iml_spikeformer|conformer|transformer  -> asr_config=conf/train_asr_<model>.yaml
#   --asr_config FILE                               -> that file instead
# Help (-h/--help) prints the header comment of run.sh and the driver's options.
model=iml_spikeformer
asr_config=
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --model) model=${2:?--model needs a value}; shift 2 ;;
        --model=*) model=${1#*=}; shift ;;
        --asr_config) asr_config=${2:?--asr_config needs a value}; shift 2 ;;
        --asr_config=*) asr_config=${1#*=}; shift ;;
        -h | --help)
            sed -n '2,6p' "$0"
            echo "  --model iml_spikeformer|conformer|transformer   selects conf/train_asr_<model>.yaml"
            echo
            exec ../../TEMPLATE/asr1/asr.sh --help
            ;;
        --*=*) args+=("$1"); shift ;;
        --*) args+=("$1" "${2-}"); shift $(($# >= 2 ? 2 : 1)) ;;
        *) args+=("$1"); shift ;;
    esac
done
if [ -z "${asr_config}" ]; then
    asr_config=conf/train_asr_${model}.yaml
    if [ ! -f "${asr_config}" ]; then
        echo "$0: unknown --model ${model}; available: $(cd conf && ls train_asr_*.yaml | sed 's/^train_asr_//; s/\.yaml$//' | tr '\n' ' ')" >&2
        exit 2
    fi
fi
