#!/usr/bin/env bash
# Stage driver shared by every espnet_iml ASR recipe (egs2/<corpus>/asr1/run.sh calls it).
#
# It follows the layout of ESPnet's egs2/TEMPLATE/asr1/asr.sh (run from the recipe directory,
# data/ dump/ exp/ under it, the same option names) but needs no Kaldi tools: every stage is a
# few lines calling Python (espnet_iml.recipe.* for data, espnet_iml.bin.asr_train and
# asr_inference, which are ESPnet's own programs with the iml_spikeformer encoder registered).
#
# Stages:
#   1  data preparation           local/data.sh -> ${datadir}/<set>
#   2  speed perturbation         ${datadir}/<train>_sp             (only with --speed_perturb_factors)
#   3  format audio               ${dumpdir}/raw/<set>              (16 kHz mono wav)
#   4  fbank                      ${dumpdir}/fbank/<set>/feats.scp
#   5  token list                 ${datadir}/token_list/{char,bpe_<mode><n>}/tokens.txt
#   6  ESPnet statistics          ${expdir}/asr_stats_*/            (shapes; feats_stats.npz: global MVN)
#                                 ${expdir}/lm_stats_*/             (LM text shapes; --use_lm true)
#   7  training                   ${expdir}/lm_<tag>/               (the LM first, with --use_lm true;
#                                                                    skipped when already trained)
#                                 ${expdir}/asr_<tag>/              (resumes from checkpoint.pth if the
#                                                                    command trains the same model)
#   8  decoding                   ${expdir}/asr_<tag>/<inference_tag>/<set>/text  (skips finished sets;
#                                                                    with --use_lm true, LM shallow fusion)
#   9  scoring                    .../<set>/score_{cer,wer}/{result.txt,score.json}
#  10  results table              RESULTS.md (recipe directory) and ${expdir}/asr_<tag>/RESULTS.md
#  11  energy report (optional)   .../<inference_tag>/energy/       (espnet_iml.bin.energy)
#
# Every stage checks that its inputs exist (and names the stage that makes them), replaces its
# own outputs when re-run (stage 8 skips sets already decoded with the same model and options),
# and prints its wall time.
set -euo pipefail

TEMPLATE_DIR=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd)

log() {
    echo "$(date '+%Y-%m-%dT%H:%M:%S') (asr.sh) $*"
}
die() {
    echo "$(date '+%Y-%m-%dT%H:%M:%S') (asr.sh) ERROR: $*" >&2
    exit 1
}
min() {
    local a=$1 b
    for b in "$@"; do
        [ "${b}" -lt "${a}" ] && a=${b}
    done
    echo "${a}"
}
SECONDS=0

# General
stage=1                 # First stage to run.
stop_stage=10000        # Last stage to run.
skip_data_prep=false    # Skip stages 1-5.
skip_train=false        # Skip stages 6-7.
skip_eval=false         # Skip stages 8-11.
ngpu=1                  # GPUs per node for training (0: CPU).
num_nodes=1             # Nodes for training (> 1 needs --dist_launcher).
dist_launcher=          # Multi-node launcher: slurm (srun) or mpi (mpirun).
master_port=            # Master port for multi-node rendezvous (default: shared-file init).
nj=4                    # Parallel jobs for data preparation and statistics.
inference_nj=4          # Parallel decoding jobs (over all test sets together).
gpu_inference=false     # Decode on GPU (one per job).
train_threads=          # OMP/torch threads for CPU training (empty: torch's default).
python=python3          # Python with espnet_iml installed (path.sh puts .venv first in PATH).
datadir=data            # Kaldi-style data directories.
dumpdir=dump            # Audio and feature dumps.
expdir=exp              # Experiments.
results_md=RESULTS.md   # Results table written by stage 10.

# Data preparation
local_data_opts=        # Options given to local/data.sh (shell-quoted: "--train_sets 'a b'").

# Speed perturbation
speed_perturb_factors=  # e.g. "0.9 1.0 1.1"; empty: no stage 2.

# Features
feats_type=fbank        # Only fbank: 80-dim log-mel filter banks computed in stage 4.
fs=16k                  # Sampling rate of the formatted audio.
n_mels=80               # Filter-bank channels.
feats_normalize=global_mvn  # global_mvn (stats from stage 6), utterance_mvn or none.

# Tokens
token_type=bpe          # char or bpe.
nbpe=5000               # BPE vocabulary size.
bpemode=unigram         # unigram or bpe.
bpe_train_text=         # Text for the token list / BPE model (default: ${datadir}/<train_set>/text).
nlsyms_txt=none         # Non-linguistic symbols list.
cleaner=none            # Text cleaner for ESPnet's preprocessor.

# ASR model
asr_config=             # Training config (ESPnet YAML).
asr_args=               # Extra arguments for asr_train (override the config; not part of the tag).
asr_tag=                # Suffix of the experiment dir (default: derived from config and tokens).
asr_exp=                # Experiment dir (overrides asr_tag).
asr_stats_dir=          # Statistics dir.
resume=true             # Resume training from ${asr_exp}/checkpoint.pth when it exists (a run made
                        # with other options or another config stops the stage instead).
pretrained_model=       # Initialize from this checkpoint (ESPnet --init_param syntax).
ignore_init_mismatch=false
asr_speech_fold_length=800
asr_text_fold_length=150

# Language model (ESPnet's espnet2.bin.lm_train; used in decoding by shallow fusion, with
# the weight lm_weight of the decoding config)
use_lm=false            # Train an LM in stages 6-7 and decode with it in stage 8.
lm_config=              # LM training config (ESPnet YAML).
lm_args=                # Extra arguments for lm_train.
lm_tag=                 # Suffix of the LM experiment dir (default: derived from config and tokens).
lm_exp=                 # LM experiment dir (overrides lm_tag).
lm_train_text=          # LM training text: Kaldi-style "<id> <sentence>" files, joined
                        # (default: ${datadir}/<train_set>/text).
lm_dev_text=            # LM validation text (default: the validation set's text).
lm_fold_length=150
inference_lm=valid.loss.ave.pth  # LM checkpoint in ${lm_exp} to decode with.

# Decoding and scoring
inference_config=       # Decoding config (ESPnet YAML).
inference_args=         # Extra arguments for asr_inference.
inference_tag=          # Decoding dir name (default: derived from config and model).
inference_asr_model=valid.acc.ave.pth  # Checkpoint in ${asr_exp} to decode with.
batch_size=1
redo_decode=false       # Decode every test set again (default: skip sets already decoded with
                        # the same model and options, and finished jobs of an interrupted run).
score_units=auto        # Units to score: "char", "word" or both; auto: char for --token_type
                        # char, word otherwise.

# Energy (stage 11)
energy=auto             # auto: run when espnet_iml.bin.energy exists, else say so and skip;
                        # true: fail without it; false: skip.
energy_args=            # Extra arguments for espnet_iml.bin.energy.

# Sets (required)
train_set=
valid_set=
test_sets=

help_message=$(
    cat <<EOF
Usage: $0 --train_set <set> --valid_set <set> --test_sets "<set> ..." --asr_config <yaml> [options]

Run from a recipe directory (egs2/<corpus>/asr1). Stages:
  1 data prep (local/data.sh)   2 speed perturbation   3 format audio   4 fbank
  5 token list   6 ESPnet stats   7 training   8 decoding   9 scoring   10 RESULTS.md
  11 energy report (optional)

General:
  --stage N --stop_stage M      stages to run (default ${stage}..${stop_stage})
  --skip_data_prep/--skip_train/--skip_eval true|false
  --ngpu N                      GPUs per node for training (default ${ngpu}; 0 = CPU)
  --num_nodes N --dist_launcher slurm|mpi [--master_port P]   multi-node training
  --nj N                        parallel jobs for stages 2-6 (default ${nj})
  --inference_nj N              parallel decoding jobs (default ${inference_nj})
  --gpu_inference true|false    decode on GPUs (default ${gpu_inference})
  --train_threads N             torch threads for CPU training (default: torch's choice)
  --python CMD                  python to run (default ${python})
  --datadir/--dumpdir/--expdir DIR   (default ${datadir} ${dumpdir} ${expdir})
  --results_md FILE             results table (default ${results_md})
Data:
  --local_data_opts "..."       options for local/data.sh
  --speed_perturb_factors "0.9 1.0 1.1"
  --feats_type fbank --fs 16k --n_mels 80 --feats_normalize global_mvn|utterance_mvn|none
Tokens:
  --token_type char|bpe --nbpe N --bpemode unigram|bpe --bpe_train_text FILE
Model:
  --asr_config YAML --asr_args "..." --asr_tag TAG --asr_exp DIR --asr_stats_dir DIR
  --resume true|false --pretrained_model PATH --ignore_init_mismatch true|false
Decoding:
  --inference_config YAML --inference_args "..." --inference_tag TAG
  --use_lm true|false           train an LM (stages 6-7) and fuse it in decoding (default ${use_lm})
  --lm_config YAML --lm_args "..." --lm_tag TAG --lm_exp DIR --inference_lm FILE
  --lm_train_text "FILE ..." --lm_dev_text FILE   LM text (default: the training/validation text)
  --inference_asr_model FILE (default ${inference_asr_model}) --batch_size N
  --redo_decode true|false      decode sets again that are already decoded (default ${redo_decode})
  --score_units auto|char|word|"word char"
Energy:
  --energy auto|true|false --energy_args "..."
Sets:
  --train_set SET --valid_set SET --test_sets "SET ..."
EOF
)

run_args=$(printf '%q ' "$0" "$@")
# shellcheck source=egs2/TEMPLATE/asr1/scripts/parse_options.sh
. "${TEMPLATE_DIR}/scripts/parse_options.sh"
if [ $# -ne 0 ]; then
    echo "${help_message}" >&2
    die "unexpected positional argument(s): $*"
fi

# path.sh (recipe dir) puts the project's virtual environment first in PATH.
if [ -f ./path.sh ]; then
    # shellcheck disable=SC1091
    . ./path.sh
fi

# ----------------------------------------------------------------------------------------
# Checks and derived names
[ -n "${train_set}" ] || die "--train_set is required"
[ -n "${valid_set}" ] || die "--valid_set is required"
[ -n "${test_sets}" ] || die "--test_sets is required"
[ "${feats_type}" = fbank ] || die "--feats_type ${feats_type} is not supported (only fbank)"
case "${token_type}" in char | bpe) ;; *) die "--token_type must be char or bpe (got ${token_type})" ;; esac
case "${feats_normalize}" in global_mvn | utterance_mvn | none) ;; *) die "--feats_normalize must be global_mvn, utterance_mvn or none" ;; esac
case "${energy}" in auto | true | false) ;; *) die "--energy must be auto, true or false" ;; esac
case "${use_lm}" in true | false) ;; *) die "--use_lm must be true or false (got ${use_lm})" ;; esac
[[ "${ngpu}" =~ ^[0-9]+$ ]] || die "--ngpu must be a number"
[[ "${num_nodes}" =~ ^[1-9][0-9]*$ ]] || die "--num_nodes must be a positive number"
[[ "${nj}" =~ ^[1-9][0-9]*$ ]] || die "--nj must be a positive number"
[[ "${inference_nj}" =~ ^[1-9][0-9]*$ ]] || die "--inference_nj must be a positive number"
if [ "${num_nodes}" -gt 1 ]; then
    case "${dist_launcher}" in
        slurm | mpi) ;;
        *) die "--num_nodes ${num_nodes} needs --dist_launcher slurm or mpi" ;;
    esac
fi
case "${fs}" in
    *k) fs_hz=$((${fs%k} * 1000)) ;;
    *) fs_hz=${fs} ;;
esac

if "${skip_data_prep}" && [ "${stage}" -le 5 ]; then stage=6; fi

# The training set after speed perturbation.
if [ -n "${speed_perturb_factors}" ]; then
    train_sp=${train_set}_sp
else
    train_sp=${train_set}
fi
data_feats=${dumpdir}/${feats_type}

token_listdir=${datadir}/token_list
if [ "${token_type}" = bpe ]; then
    bpedir=${token_listdir}/bpe_${bpemode}${nbpe}
    bpeprefix=${bpedir}/bpe
    bpemodel=${bpeprefix}.model
    token_list=${bpedir}/tokens.txt
    token_tag=bpe_${bpemode}${nbpe}
else
    bpemodel=none
    token_list=${token_listdir}/char/tokens.txt
    token_tag=char
fi
[ -n "${bpe_train_text}" ] || bpe_train_text=${datadir}/${train_set}/text

if [ -z "${asr_tag}" ]; then
    if [ -n "${asr_config}" ]; then
        asr_tag=$(basename "${asr_config}" .yaml)_${feats_type}_${token_tag}
    else
        asr_tag=train_${feats_type}_${token_tag}
    fi
    [ -n "${speed_perturb_factors}" ] && asr_tag+=_sp
fi
[ -n "${asr_exp}" ] || asr_exp=${expdir}/asr_${asr_tag}
if [ -z "${asr_stats_dir}" ]; then
    asr_stats_dir=${expdir}/asr_stats_${feats_type}_${token_tag}
    [ -n "${speed_perturb_factors}" ] && asr_stats_dir+=_sp
fi
if "${use_lm}"; then
    [ -n "${lm_config}" ] || die "--use_lm true needs --lm_config (an ESPnet LM training config)"
    [ -f "${lm_config}" ] || die "--lm_config ${lm_config} does not exist"
    [ -n "${lm_tag}" ] || lm_tag=$(basename "${lm_config}" .yaml)_${token_tag}
    [ -n "${lm_exp}" ] || lm_exp=${expdir}/lm_${lm_tag}
    [ -n "${lm_train_text}" ] || lm_train_text=${datadir}/${train_set}/text
    [ -n "${lm_dev_text}" ] || lm_dev_text=${data_feats}/${valid_set}/text
fi
lm_stats_dir=${expdir}/lm_stats_${token_tag}
if [ -z "${inference_tag}" ]; then
    if [ -n "${inference_config}" ]; then
        inference_tag=$(basename "${inference_config}" .yaml)
    else
        inference_tag=inference
    fi
    if "${use_lm}"; then
        inference_tag+=_lm_$(basename "${lm_exp}")_$(echo "${inference_lm}" | sed -e 's/\//_/g' -e 's/\.[^.]*$//')
    fi
    inference_tag+=_asr_model_$(echo "${inference_asr_model}" | sed -e 's/\//_/g' -e 's/\.[^.]*$//')
fi
if [ "${score_units}" = auto ]; then
    if [ "${token_type}" = char ]; then score_units=char; else score_units=word; fi
fi
for _u in ${score_units}; do
    case "${_u}" in char | word) ;; *) die "--score_units takes char and/or word (got ${_u})" ;; esac
done

# Sets that get audio and features: training (after perturbation), validation, tests.
feat_sets=$(echo "${train_sp} ${valid_set} ${test_sets}" | tr ' ' '\n' | awk 'NF && !seen[$0]++' | tr '\n' ' ')

# ----------------------------------------------------------------------------------------
# Helpers

# run_stage N: is stage N selected by --stage/--stop_stage?
run_stage() {
    [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ]
}

_stage_no=
_stage_t0=
stage_begin() {
    _stage_no=$1
    _stage_t0=${SECONDS}
    shift
    echo
    log "==================== Stage ${_stage_no}: $* ===================="
}
stage_end() {
    log "---------- Stage ${_stage_no} done in $((SECONDS - _stage_t0)) s ----------"
}

# need PATH STAGE WHAT: fail (naming the stage that produces PATH) when PATH is missing.
need() {
    local path=$1 producer=$2 what=$3
    if [ ! -e "${path}" ]; then
        die "stage ${_stage_no} needs ${path} (${what}), which does not exist: run stage ${producer} first (--stage ${producer})"
    fi
}

# Number of lines of a file.
nlines() {
    wc -l <"$1" | tr -d ' '
}

# split_keys IN N PREFIX: cut IN into N contiguous pieces PREFIX.1.scp .. PREFIX.N.scp.
split_keys() {
    local in=$1 n=$2 prefix=$3 total
    total=$(nlines "${in}")
    rm -f "${prefix}".*.scp
    awk -v n="${n}" -v total="${total}" -v p="${prefix}" \
        '{ i = int((NR - 1) * n / total) + 1; print > (p "." i ".scp") }' "${in}"
}

# run_parallel N CMDFILE: run each line of CMDFILE with bash, at most N at a time.
run_parallel() {
    local n=$1 cmds=$2
    xargs -d '\n' -P "${n}" -n 1 bash -c <"${cmds}"
}

# q ARG...: shell-quote arguments into one string (for command lines written to files).
q() {
    printf '%q ' "$@"
}

# pymod MODULE: does the python module exist (without importing it)?
pymod() {
    "${python}" -c "import importlib.util, sys; sys.exit(importlib.util.find_spec('$1') is None)" 2>/dev/null
}

# Log file tail on failure.
fail_with_log() {
    local logfile=$1
    shift
    if [ -f "${logfile}" ]; then
        echo "----- last lines of ${logfile} -----" >&2
        tail -n 30 "${logfile}" >&2
        echo "-----" >&2
    fi
    die "$*"
}

# clock S: seconds as 1m05s.
clock() {
    printf '%dm%02ds' $(($1 / 60)) $(($1 % 60))
}

# decoding_counts LOGDIR NJ: "<decoded utterances> <done/total per job ...>". ESPnet's beam
# search logs "best hypo: " once per utterance ("Utterance [...]" for one too short to decode;
# not "best hypo length", a warning that can follow).
decoding_counts() {
    local dir=$1 nj=$2 n c sum=0 per=
    for n in $(seq "${nj}"); do
        c=$(grep -c -E "best hypo: |Utterance \[" "${dir}/asr_inference.${n}.log" 2>/dev/null || true)
        sum=$((sum + ${c:-0}))
        per+=" ${c:-0}/$(nlines "${dir}/keys.${n}.scp")"
    done
    echo "${sum}${per}"
}

# decoding_progress PID LOGDIR NJ: while PID runs, print the decoded utterances (at most every
# 10 s, per job, with an ETA); then the final count. Returns PID's exit status.
decoding_progress() {
    local pid=$1 dir=$2 nj=$3 total t0=${SECONDS} t1= d1=0 last=0 shown=${SECONDS} counts done eta
    total=$(nlines "${dir}/feats.scp")
    while kill -0 "${pid}" 2>/dev/null; do
        sleep 2
        counts=$(decoding_counts "${dir}" "${nj}")
        done=${counts%% *}
        # The rate counts from the first decoded utterance on (model loading excluded).
        if [ -z "${t1}" ] && [ "${done}" -gt 0 ]; then t1=${SECONDS}; d1=${done}; fi
        if [ "${done}" -ne "${last}" ] && [ $((SECONDS - shown)) -ge 10 ]; then
            eta=
            if [ "${done}" -gt "${d1}" ]; then
                eta=", ETA $(clock $(((SECONDS - t1) * (total - done) / (done - d1))))"
            fi
            log "decoded ${done}/${total} utterances (per job:${counts#* }; elapsed $(clock $((SECONDS - t0)))${eta})"
            last=${done}
            shown=${SECONDS}
        fi
    done
    counts=$(decoding_counts "${dir}" "${nj}")
    log "decoded ${counts%% *}/${total} utterances (per job:${counts#* }) in $(clock $((SECONDS - t0)))"
    wait "${pid}"
}

feats_dim_of() {
    if [ -f "$1/feats_dim" ]; then
        cat "$1/feats_dim"
    else
        echo "${n_mels}"
    fi
}

command -v "${python}" >/dev/null || die "python '${python}' not found: run ./setup.sh at the repository root, or pass --python"

log "$0 $*"
log "train=${train_sp} valid=${valid_set} test=[${test_sets}] tokens=${token_tag} exp=${asr_exp}"

# ----------------------------------------------------------------------------------------
# 1. Data preparation
if ! "${skip_data_prep}" && run_stage 1; then
    stage_begin 1 "data preparation (local/data.sh ${local_data_opts})"
    [ -x local/data.sh ] || die "stage 1 needs the recipe's local/data.sh in $(pwd): run asr.sh from the recipe directory (egs2/<corpus>/asr1)"
    # Shell quoting inside --local_data_opts is honoured, e.g. "--train_sets 'a b'".
    eval "_opts=(${local_data_opts})"
    python=${python} local/data.sh --datadir "${datadir}" "${_opts[@]}"
    for dset in ${train_set} ${valid_set} ${test_sets}; do
        [ -f "${datadir}/${dset}/wav.scp" ] || die "local/data.sh did not write ${datadir}/${dset}/wav.scp (check --train_set/--valid_set/--test_sets)"
    done
    _dirs=()
    for dset in $(echo "${train_set} ${valid_set} ${test_sets}" | tr ' ' '\n' | awk 'NF && !seen[$0]++'); do
        _dirs+=("${datadir}/${dset}")
    done
    "${python}" -m espnet_iml.recipe.datadir validate "${_dirs[@]}"
    stage_end
fi

# 2. Speed perturbation
if ! "${skip_data_prep}" && run_stage 2; then
    stage_begin 2 "speed perturbation (${speed_perturb_factors:-none})"
    if [ -z "${speed_perturb_factors}" ]; then
        log "no --speed_perturb_factors: nothing to do"
    else
        need "${datadir}/${train_set}/wav.scp" 1 "the training set"
        rm -rf "${datadir:?}/${train_sp}"
        # shellcheck disable=SC2086
        "${python}" -m espnet_iml.recipe.speed_perturb --data "${datadir}/${train_set}" \
            --out "${datadir}/${train_sp}" --factors ${speed_perturb_factors}
        "${python}" -m espnet_iml.recipe.datadir validate "${datadir}/${train_sp}"
    fi
    stage_end
fi

# 3. Format audio
if ! "${skip_data_prep}" && run_stage 3; then
    stage_begin 3 "format audio to ${fs_hz} Hz: ${feat_sets}"
    for dset in ${feat_sets}; do
        if [ "${dset}" = "${train_sp}" ] && [ -n "${speed_perturb_factors}" ]; then
            need "${datadir}/${dset}/wav.scp" 2 "the speed-perturbed training set"
        else
            need "${datadir}/${dset}/wav.scp" 1 "a data directory"
        fi
    done
    # format_audio and fbank redo only what changed (a re-run over complete output is a no-op).
    for dset in ${feat_sets}; do
        "${python}" -m espnet_iml.recipe.format_audio --data "${datadir}/${dset}" \
            --out "${dumpdir}/raw/${dset}" --fs "${fs_hz}" --nj "${nj}"
    done
    stage_end
fi

# 4. Filter banks (the global mean and variance for normalization come from stage 6)
if ! "${skip_data_prep}" && run_stage 4; then
    stage_begin 4 "${n_mels}-dim fbank: ${feat_sets}"
    for dset in ${feat_sets}; do
        need "${dumpdir}/raw/${dset}/wav.scp" 3 "formatted audio"
    done
    for dset in ${feat_sets}; do
        "${python}" -m espnet_iml.recipe.fbank --data "${dumpdir}/raw/${dset}" \
            --out "${data_feats}/${dset}" --n_mels "${n_mels}" --nj "${nj}"
        [ -f "${data_feats}/${dset}/feats_type" ] || echo "${feats_type}" >"${data_feats}/${dset}/feats_type"
        [ -f "${data_feats}/${dset}/feats_dim" ] || echo "${n_mels}" >"${data_feats}/${dset}/feats_dim"
    done
    stage_end
fi

# 5. Token list: ESPnet's tokenize_text for characters; for BPE sentencepiece's own trainer
# and ESPnet asr.sh's token list (the vocabulary without <unk> <s> </s>, between <blank>
# <unk> and <sos/eos>).
if ! "${skip_data_prep}" && run_stage 5; then
    stage_begin 5 "token list (${token_tag}) from ${bpe_train_text}"
    need "${bpe_train_text}" 1 "transcripts of the training set"
    if [ "${token_type}" = bpe ]; then
        rm -rf "${bpedir:?}"
        mkdir -p "${bpedir}"
        cut -f 2- -d " " "${bpe_train_text}" >"${bpedir}/train.txt"
        _opts=()
        if [ "${nlsyms_txt}" != none ]; then
            _opts+=("--user_defined_symbols=$(paste -s -d , "${nlsyms_txt}")")
        fi
        # What ESPnet's spm_train does (it is not in the pip package).
        "${python}" -c 'import sys, sentencepiece as spm; spm.SentencePieceTrainer.train(" ".join(sys.argv[1:]))' \
            --input="${bpedir}/train.txt" --vocab_size="${nbpe}" --model_type="${bpemode}" \
            --model_prefix="${bpeprefix}" --character_coverage=1.0 --input_sentence_size=100000000 \
            "${_opts[@]}" >"${bpedir}/spm_train.log" 2>&1 \
            || fail_with_log "${bpedir}/spm_train.log" "sentencepiece could not train a ${bpemode} model of ${nbpe} pieces on ${bpe_train_text} (reason above: 'Vocabulary size too high' needs a smaller --nbpe, 'smaller than required_chars' a larger one)"
        rm "${bpedir}/train.txt"
        {
            echo "<blank>"
            echo "<unk>"
            awk 'NR > 3 { print $1 }' "${bpeprefix}.vocab"
            echo "<sos/eos>"
        } >"${token_list}"
    else
        rm -rf "${token_listdir:?}/char"
        mkdir -p "${token_listdir}/char"
        "${python}" -m espnet_iml.bin.tokenize_text --token_type char --field 2- \
            --input "${bpe_train_text}" --output "${token_list}" --cleaner "${cleaner}" \
            --non_linguistic_symbols "${nlsyms_txt}" --write_vocabulary true \
            --add_symbol "<blank>:0" --add_symbol "<unk>:1" --add_symbol "<sos/eos>:-1" \
            >"${token_listdir}/char/tokenize_text.log" 2>&1 \
            || fail_with_log "${token_listdir}/char/tokenize_text.log" "tokenize_text failed on ${bpe_train_text}"
    fi
    log "$(nlines "${token_list}") tokens in ${token_list}"
    stage_end
fi

# text_shapes_with_vocab STATS_DIR: {train,valid}/text_shape.<token_type>, ESPnet's text
# shapes with the token count as the last dimension (used to count batch bins).
text_shapes_with_vocab() {
    local dir=$1 ntok part
    ntok=$(nlines "${token_list}")
    for part in train valid; do
        awk -v N="${ntok}" '{ print $0 "," N }' "${dir}/${part}/text_shape" \
            >"${dir}/${part}/text_shape.${token_type}"
    done
}

# lm_shapes: the LM training text (the --lm_train_text files joined) and its token shapes
# (part of stage 6 with --use_lm true).
lm_shapes() {
    local f
    for f in ${lm_train_text} ${lm_dev_text}; do
        [ -e "${f}" ] || die "stage 6 needs the LM text ${f} (--lm_train_text, --lm_dev_text), which does not exist: stage 1 makes the recipe's LM text when the corpus has it (run stage 1 first, --stage 1), or decode without an LM (--use_lm false)"
        [ -s "${f}" ] || die "LM text ${f} is empty"
    done
    rm -rf "${lm_stats_dir:?}"
    mkdir -p "${lm_stats_dir}"
    # shellcheck disable=SC2086
    cat ${lm_train_text} >"${lm_stats_dir}/lm_train.txt"
    log "LM text: $(nlines "${lm_stats_dir}/lm_train.txt") training sentences (${lm_train_text}), $(nlines "${lm_dev_text}") validation (${lm_dev_text}); log: ${lm_stats_dir}/stats.log"
    # shellcheck disable=SC2086
    OMP_NUM_THREADS=1 "${python}" -m espnet_iml.bin.lm_train --collect_stats true \
        "${common_token_opts[@]}" \
        --train_data_path_and_name_and_type "${lm_stats_dir}/lm_train.txt,text,text" \
        --valid_data_path_and_name_and_type "${lm_dev_text},text,text" \
        --train_shape_file "${lm_stats_dir}/lm_train.txt" --valid_shape_file "${lm_dev_text}" \
        --output_dir "${lm_stats_dir}" --config "${lm_config}" ${lm_args} \
        >"${lm_stats_dir}/stats.log" 2>&1 \
        || fail_with_log "${lm_stats_dir}/stats.log" "LM statistics collection failed (log: ${lm_stats_dir}/stats.log)"
    text_shapes_with_vocab "${lm_stats_dir}"
}

# lm_train: train the LM into ${lm_exp} (part of stage 7 with --use_lm true). Skipped when
# ${lm_exp}/lm.done records the same config, text, tokens and options; resumed when an
# interrupted run of the same ones left a checkpoint; started afresh otherwise.
lm_train() {
    need "${lm_stats_dir}/train/text_shape.${token_type}" 6 "LM training text shapes"
    need "${lm_stats_dir}/valid/text_shape.${token_type}" 6 "LM validation text shapes"
    local stamp
    stamp="config=$(cksum <"${lm_config}") text=$(cksum <"${lm_stats_dir}/lm_train.txt") dev=$(cksum <"${lm_dev_text}") tokens=$(cksum <"${token_list}") args=${lm_args} ngpu=${ngpu}"
    if [ -f "${lm_exp}/lm.done" ] && [ "$(cat "${lm_exp}/lm.done")" = "${stamp}" ] \
        && [ -f "${lm_exp}/${inference_lm}" ]; then
        log "LM ${lm_exp} is already trained with this config and text: skipped"
        return 0
    fi
    if [ ! -f "${lm_exp}/lm.stamp" ] || [ "$(cat "${lm_exp}/lm.stamp")" != "${stamp}" ]; then
        rm -rf "${lm_exp:?}"
    fi
    mkdir -p "${lm_exp}"
    printf '%s\n' "${stamp}" >"${lm_exp}/lm.stamp"
    rm -f "${lm_exp}/lm.done" "${lm_exp}/config.yaml"
    log "training the LM -> ${lm_exp} (full log: ${lm_exp}/train.log)"
    local env=()
    [ -n "${train_threads}" ] && env=(env "OMP_NUM_THREADS=${train_threads}")
    # shellcheck disable=SC2086
    if ! "${env[@]}" "${python}" -m espnet_iml.bin.lm_train "${common_token_opts[@]}" \
        --train_data_path_and_name_and_type "${lm_stats_dir}/lm_train.txt,text,text" \
        --valid_data_path_and_name_and_type "${lm_dev_text},text,text" \
        --train_shape_file "${lm_stats_dir}/train/text_shape.${token_type}" \
        --valid_shape_file "${lm_stats_dir}/valid/text_shape.${token_type}" \
        --fold_length "${lm_fold_length}" --resume "${resume}" --ngpu "${ngpu}" \
        --output_dir "${lm_exp}" --config "${lm_config}" ${lm_args} 2>&1 \
        | tee -p -a "${lm_exp}/train.log" \
        | "${python}" -m espnet_iml.recipe.progress --config "${lm_exp}/config.yaml" --indent 4; then
        fail_with_log "${lm_exp}/train.log" "LM training failed (log: ${lm_exp}/train.log)"
    fi
    [ -f "${lm_exp}/${inference_lm}" ] || die "LM training ended without ${lm_exp}/${inference_lm} (log: ${lm_exp}/train.log)"
    printf '%s\n' "${stamp}" >"${lm_exp}/lm.done"
}

# Options common to statistics collection and training.
if [ -n "${asr_config}" ]; then
    [ -f "${asr_config}" ] || die "--asr_config ${asr_config} does not exist"
fi
common_token_opts=(
    --use_preprocessor true --bpemodel "${bpemodel}" --token_type "${token_type}"
    --token_list "${token_list}" --non_linguistic_symbols "${nlsyms_txt}"
    --cleaner "${cleaner}" --g2p none
)
common_train_opts=("${common_token_opts[@]}")
[ -n "${asr_config}" ] && common_train_opts+=(--config "${asr_config}")

# 6. ESPnet statistics
if ! "${skip_train}" && run_stage 6; then
    stage_begin 6 "ESPnet statistics -> ${asr_stats_dir}"
    need "${data_feats}/${train_sp}/feats.scp" 4 "training features"
    need "${data_feats}/${valid_set}/feats.scp" 4 "validation features"
    need "${token_list}" 5 "the token list"
    [ "${token_type}" = bpe ] && need "${bpemodel}" 5 "the BPE model"

    _logdir=${asr_stats_dir}/logdir
    rm -rf "${asr_stats_dir:?}"
    mkdir -p "${_logdir}"
    _nj=$(min "${nj}" "$(nlines "${data_feats}/${train_sp}/feats.scp")" "$(nlines "${data_feats}/${valid_set}/feats.scp")")
    split_keys "${data_feats}/${train_sp}/feats.scp" "${_nj}" "${_logdir}/train"
    split_keys "${data_feats}/${valid_set}/feats.scp" "${_nj}" "${_logdir}/valid"
    _common=$(q "${common_train_opts[@]}" --input_size "$(feats_dim_of "${data_feats}/${train_sp}")")
    : >"${_logdir}/cmds"
    for n in $(seq "${_nj}"); do
        echo "OMP_NUM_THREADS=1 $(q "${python}" -m espnet_iml.bin.asr_train --collect_stats true \
            --train_data_path_and_name_and_type "${data_feats}/${train_sp}/feats.scp,speech,kaldi_ark" \
            --train_data_path_and_name_and_type "${data_feats}/${train_sp}/text,text,text" \
            --valid_data_path_and_name_and_type "${data_feats}/${valid_set}/feats.scp,speech,kaldi_ark" \
            --valid_data_path_and_name_and_type "${data_feats}/${valid_set}/text,text,text" \
            --train_shape_file "${_logdir}/train.${n}.scp" --valid_shape_file "${_logdir}/valid.${n}.scp" \
            --output_dir "${_logdir}/stats.${n}") ${_common} ${asr_args} >$(q "${_logdir}/stats.${n}.log") 2>&1" \
            >>"${_logdir}/cmds"
    done
    log "collecting statistics with ${_nj} job(s); logs: ${_logdir}/stats.*.log"
    run_parallel "${_nj}" "${_logdir}/cmds" || fail_with_log "${_logdir}/stats.1.log" "statistics collection failed (logs: ${_logdir}/stats.*.log)"
    _opts=()
    for n in $(seq "${_nj}"); do _opts+=(--input_dir "${_logdir}/stats.${n}"); done
    "${python}" -m espnet2.bin.aggregate_stats_dirs "${_opts[@]}" --output_dir "${asr_stats_dir}"
    text_shapes_with_vocab "${asr_stats_dir}"
    log "$(nlines "${asr_stats_dir}/train/speech_shape") training and $(nlines "${asr_stats_dir}/valid/speech_shape") validation utterances; stats: ${asr_stats_dir}/train/feats_stats.npz"
    if "${use_lm}"; then
        lm_shapes
    fi
    stage_end
fi

# 7. Training
if ! "${skip_train}" && run_stage 7; then
    stage_begin 7 "training -> ${asr_exp}"
    [ -n "${asr_config}" ] || die "--asr_config is required for training"
    need "${data_feats}/${train_sp}/feats.scp" 4 "training features"
    need "${data_feats}/${valid_set}/feats.scp" 4 "validation features"
    need "${token_list}" 5 "the token list"
    need "${asr_stats_dir}/train/speech_shape" 6 "training shapes"
    need "${asr_stats_dir}/train/text_shape.${token_type}" 6 "training text shapes"
    need "${asr_stats_dir}/valid/text_shape.${token_type}" 6 "validation text shapes"
    [ "${feats_normalize}" = global_mvn ] && need "${asr_stats_dir}/train/feats_stats.npz" 6 "global mean/variance statistics"
    if "${use_lm}"; then
        lm_train
    fi

    _opts=()
    case "${feats_normalize}" in
        global_mvn) _opts+=(--normalize global_mvn --normalize_conf "stats_file=${asr_stats_dir}/train/feats_stats.npz") ;;
        utterance_mvn) _opts+=(--normalize utterance_mvn) ;;
        none) _opts+=(--normalize none) ;;
    esac
    if [ -n "${pretrained_model}" ]; then
        _opts+=(--init_param "${pretrained_model}" --ignore_init_mismatch "${ignore_init_mismatch}")
    fi
    _launch=()
    if [ "${num_nodes}" -gt 1 ]; then
        # One process per node, each spawning one worker per GPU (ESPnet's launcher does the same).
        _opts+=(--multiprocessing_distributed true --dist_launcher "${dist_launcher}")
        if [ -n "${master_port}" ]; then
            _opts+=(--dist_master_port "${master_port}")
        else
            _init=$(cd "$(dirname "${asr_exp}")" && pwd)/$(basename "${asr_exp}")/.dist_init_$$_${RANDOM}
            _opts+=(--dist_init_method "file://${_init}")
        fi
        [ "${ngpu}" -eq 0 ] && _opts+=(--dist_backend gloo)
        if [ "${dist_launcher}" = slurm ]; then
            _launch=(srun --export=ALL --nodes "${num_nodes}" --ntasks "${num_nodes}" --ntasks-per-node 1)
        else
            _launch=(mpirun -np "${num_nodes}")
        fi
    elif [ "${ngpu}" -gt 1 ]; then
        _opts+=(--multiprocessing_distributed true)
    fi
    if [ "${ngpu}" -gt 0 ]; then
        _have=$("${python}" -c 'import torch; print(torch.cuda.device_count())' 2>/dev/null || echo 0)
        [ "${_have}" -ge "${ngpu}" ] || die "--ngpu ${ngpu} but this machine has ${_have} usable GPU(s); use --ngpu ${_have}"
    fi

    _train=("${common_train_opts[@]}" --input_size "$(feats_dim_of "${data_feats}/${train_sp}")"
        --train_data_path_and_name_and_type "${data_feats}/${train_sp}/feats.scp,speech,kaldi_ark"
        --train_data_path_and_name_and_type "${data_feats}/${train_sp}/text,text,text"
        --valid_data_path_and_name_and_type "${data_feats}/${valid_set}/feats.scp,speech,kaldi_ark"
        --valid_data_path_and_name_and_type "${data_feats}/${valid_set}/text,text,text"
        --train_shape_file "${asr_stats_dir}/train/speech_shape"
        --train_shape_file "${asr_stats_dir}/train/text_shape.${token_type}"
        --valid_shape_file "${asr_stats_dir}/valid/speech_shape"
        --valid_shape_file "${asr_stats_dir}/valid/text_shape.${token_type}"
        --fold_length "${asr_speech_fold_length}" --fold_length "${asr_text_fold_length}"
        --resume "${resume}" --ngpu "${ngpu}" --output_dir "${asr_exp}" "${_opts[@]}")
    mkdir -p "${asr_exp}"
    if [ -f "${asr_exp}/checkpoint.pth" ] && "${resume}"; then
        # Ours: ESPnet resumes from checkpoint.pth whatever this command says. Resume only the
        # same training; config.previous.yaml is kept for a start interrupted before ESPnet
        # wrote config.yaml again.
        _prev=${asr_exp}/config.yaml
        [ -f "${_prev}" ] || _prev=${asr_exp}/config.previous.yaml
        if [ -f "${_prev}" ]; then
            log "found ${asr_exp}/checkpoint.pth: checking that this command trains the same model"
            _rc=0
            # shellcheck disable=SC2086
            _diff=$("${python}" -m espnet_iml.recipe.resume_check --previous "${_prev}" -- \
                "${_train[@]}" ${asr_args} 2>"${asr_exp}/resume_check.log") || _rc=$?
            if [ "${_rc}" -eq 3 ]; then  # 3: a different training (the keys are listed)
                _old=
                [ -x "${asr_exp}/run.sh" ] && _old=" (${asr_exp}/run.sh does)"
                die "${asr_exp} holds a training made with other options or another config (checkpoint.pth); resuming it with this command would mix two recipes. Differences (that run -> this command):
${_diff}
Nothing was changed. To train the new recipe, remove that folder (rm -r ${asr_exp}) or give another --asr_tag; to go on with the old training, re-run it with the options that trained it${_old}."
            elif [ "${_rc}" -ne 0 ]; then
                fail_with_log "${asr_exp}/resume_check.log" "could not check the training options against ${_prev} (log: ${asr_exp}/resume_check.log)"
            fi
        fi
        log "found ${asr_exp}/checkpoint.pth: training resumes from it"
    fi
    # A script that re-runs this stage with the same options (it resumes).
    printf '#!/usr/bin/env bash\ncd %q\n%s --stage 7 --stop_stage 7 "$@"\n' "$(pwd)" "${run_args}" >"${asr_exp}/run.sh"
    chmod +x "${asr_exp}/run.sh"
    log "training started; full log: ${asr_exp}/train.log (re-run this stage with ${asr_exp}/run.sh)"
    {
        echo "# $(date '+%Y-%m-%dT%H:%M:%S') stage 7: ${run_args}"
    } >>"${asr_exp}/train.log"
    _env=()
    [ -n "${train_threads}" ] && _env=(env "OMP_NUM_THREADS=${train_threads}")
    # ESPnet's log goes to train.log; the screen gets a line per logged step and per epoch
    # (espnet_iml.recipe.progress). tee -p keeps writing the log even if the filter dies.
    # config.yaml is rewritten by ESPnet at start; move the old one away so that max_epoch on
    # screen is current.
    [ -f "${asr_exp}/config.yaml" ] && mv "${asr_exp}/config.yaml" "${asr_exp}/config.previous.yaml"
    # shellcheck disable=SC2086
    if ! "${_env[@]}" "${_launch[@]}" "${python}" -m espnet_iml.bin.asr_train \
        "${_train[@]}" ${asr_args} 2>&1 | tee -p -a "${asr_exp}/train.log" \
        | "${python}" -m espnet_iml.recipe.progress --config "${asr_exp}/config.yaml" --indent 4; then
        fail_with_log "${asr_exp}/train.log" "training failed (log: ${asr_exp}/train.log)"
    fi
    [ -e "${asr_exp}/${inference_asr_model}" ] || log "warning: training ended without ${asr_exp}/${inference_asr_model}"
    stage_end
fi

# 8. Decoding
# All test sets still to decode are decoded together: their feature lists are joined (keys
# prefixed with the set's index), cut into --inference_nj pieces, decoded by that many
# asr_inference processes (one model load each), and the 1-best outputs are split back per set.
# A re-run skips finished work (ours): a set whose <set>/decode.done records the same model,
# training config, decoding options and feature list is not decoded again, and after an
# interrupted run the jobs that finished (logdir/output.N/decode.done) are not run again.
# --redo_decode true decodes every set again.
if ! "${skip_eval}" && run_stage 8; then
    stage_begin 8 "decoding ${asr_exp}/${inference_asr_model}: ${test_sets}"
    need "${asr_exp}/config.yaml" 7 "the training config written by ESPnet"
    need "${asr_exp}/${inference_asr_model}" 7 "the averaged checkpoint"
    [ -z "${inference_config}" ] || [ -f "${inference_config}" ] || die "--inference_config ${inference_config} does not exist"
    for dset in ${test_sets}; do
        need "${data_feats}/${dset}/feats.scp" 4 "features of test set ${dset}"
    done
    if "${gpu_inference}"; then _ngpu=1; else _ngpu=0; fi
    _opts=()
    [ -n "${inference_config}" ] && _opts+=(--config "${inference_config}")
    if "${use_lm}"; then
        need "${lm_exp}/config.yaml" 7 "the LM training config written by ESPnet"
        need "${lm_exp}/${inference_lm}" 7 "the LM checkpoint"
        _opts+=(--lm_train_config "${lm_exp}/config.yaml" --lm_file "${lm_exp}/${inference_lm}")
    fi
    _ddir=${asr_exp}/${inference_tag}
    _logdir=${_ddir}/logdir
    # What a set's hypotheses depend on (checksums of the files, the options as given).
    _stamp="model=$(cksum <"${asr_exp}/${inference_asr_model}") config=$(cksum <"${asr_exp}/config.yaml")"
    [ -n "${inference_config}" ] && _stamp+=" decode=$(cksum <"${inference_config}")"
    "${use_lm}" && _stamp+=" lm=$(cksum <"${lm_exp}/${inference_lm}")"
    _stamp+=" args=${inference_args} batch_size=${batch_size} gpu=${gpu_inference}"
    _todo=()
    for dset in ${test_sets}; do
        _done=${_ddir}/${dset}/decode.done
        if ! "${redo_decode}" && [ -f "${_done}" ] && [ -f "${_ddir}/${dset}/text" ] \
            && [ "$(cat "${_done}")" = "${_stamp} feats=$(cksum <"${data_feats}/${dset}/feats.scp")" ]; then
            log "${dset}: already decoded with this model and these options; skipped (--redo_decode true decodes it again)"
        else
            _todo+=("${dset}")
        fi
    done
    if [ ${#_todo[@]} -eq 0 ]; then
        log "every test set is already decoded: nothing to do"
    else
        # Finished jobs are reused only when the job split is the same (same sets, same nj).
        _jobs="${_stamp} sets=${_todo[*]} nj=${inference_nj}"
        for dset in "${_todo[@]}"; do
            _jobs+=" ${dset}=$(cksum <"${data_feats}/${dset}/feats.scp")"
        done
        if "${redo_decode}" || [ ! -f "${_logdir}/jobs.stamp" ] || [ "$(cat "${_logdir}/jobs.stamp")" != "${_jobs}" ]; then
            rm -rf "${_logdir:?}"
        fi
        mkdir -p "${_logdir}"
        printf '%s\n' "${_jobs}" >"${_logdir}/jobs.stamp"
        _i=0
        for dset in "${_todo[@]}"; do
            _i=$((_i + 1))
            rm -rf "${_ddir:?}/${dset}"
            mkdir -p "${_ddir}/${dset}"
            awk -v i="${_i}" '{ print i "@" $0 }' "${data_feats}/${dset}/feats.scp"
        done >"${_logdir}/feats.scp"
        _nj=$(min "${inference_nj}" "$(nlines "${_logdir}/feats.scp")")
        split_keys "${_logdir}/feats.scp" "${_nj}" "${_logdir}/keys"
        : >"${_logdir}/cmds"
        _reused=0
        for n in $(seq "${_nj}"); do
            if [ -f "${_logdir}/output.${n}/decode.done" ]; then
                _reused=$((_reused + 1))
                continue
            fi
            rm -rf "${_logdir:?}/output.${n}"
            # shellcheck disable=SC2086
            echo "OMP_NUM_THREADS=1 $(q "${python}" -m espnet_iml.bin.asr_inference \
                --batch_size "${batch_size}" --ngpu "${_ngpu}" \
                --data_path_and_name_and_type "${_logdir}/feats.scp,speech,kaldi_ark" \
                --key_file "${_logdir}/keys.${n}.scp" \
                --asr_train_config "${asr_exp}/config.yaml" \
                --asr_model_file "${asr_exp}/${inference_asr_model}" \
                --output_dir "${_logdir}/output.${n}" "${_opts[@]}") ${inference_args} \
                >$(q "${_logdir}/asr_inference.${n}.log") 2>&1 && touch $(q "${_logdir}/output.${n}/decode.done")" \
                >>"${_logdir}/cmds"
        done
        _note=
        [ "${_reused}" -gt 0 ] && _note=" (${_reused} finished by an earlier run)"
        log "$(nlines "${_logdir}/feats.scp") utterances of ${_todo[*]}, ${_nj} decoding job(s)${_note}; logs: ${_logdir}/asr_inference.*.log"
        if [ -s "${_logdir}/cmds" ]; then
            run_parallel "${_nj}" "${_logdir}/cmds" &
            if ! decoding_progress $! "${_logdir}" "${_nj}"; then
                for n in $(seq "${_nj}"); do
                    grep -q -E "Error|Traceback" "${_logdir}/asr_inference.${n}.log" 2>/dev/null \
                        && fail_with_log "${_logdir}/asr_inference.${n}.log" "decoding failed (log: ${_logdir}/asr_inference.${n}.log)"
                done
                die "decoding failed (logs: ${_logdir}/asr_inference.*.log)"
            fi
        fi
        # Split the merged 1-best outputs back into one directory per test set.
        _outs=()
        _i=0
        for dset in "${_todo[@]}"; do
            _i=$((_i + 1))
            _outs+=("${_i}=${_ddir}/${dset}")
        done
        for f in token token_int score text; do
            [ -f "${_logdir}/output.1/1best_recog/${f}" ] || continue
            for n in $(seq "${_nj}"); do
                cat "${_logdir}/output.${n}/1best_recog/${f}"
            done | awk -v f="${f}" -v sets="${_outs[*]}" '
                BEGIN { n = split(sets, a, " "); for (k = 1; k <= n; k++) { p = index(a[k], "="); dir[substr(a[k], 1, p - 1)] = substr(a[k], p + 1) } }
                { p = index($0, "@"); print substr($0, p + 1) > (dir[substr($0, 1, p - 1)] "/" f ".unsorted") }'
            for dset in "${_todo[@]}"; do
                if [ -f "${_ddir}/${dset}/${f}.unsorted" ]; then
                    sort -k1,1 "${_ddir}/${dset}/${f}.unsorted" >"${_ddir}/${dset}/${f}"
                    rm "${_ddir}/${dset}/${f}.unsorted"
                fi
            done
        done
        for dset in "${_todo[@]}"; do
            [ -f "${_ddir}/${dset}/text" ] || die "decoding wrote no hypotheses for ${dset} (logs: ${_logdir}/asr_inference.*.log)"
            _n_ref=$(nlines "${data_feats}/${dset}/feats.scp")
            _n_hyp=$(nlines "${_ddir}/${dset}/text")
            [ "${_n_hyp}" -eq "${_n_ref}" ] || log "warning: ${dset}: ${_n_hyp} hypotheses for ${_n_ref} utterances"
            printf '%s\n' "${_stamp} feats=$(cksum <"${data_feats}/${dset}/feats.scp")" >"${_ddir}/${dset}/decode.done"
            log "${dset}: ${_n_hyp} hypotheses -> ${_ddir}/${dset}/text"
        done
    fi
    stage_end
fi

# 9. Scoring
if ! "${skip_eval}" && run_stage 9; then
    stage_begin 9 "scoring (${score_units}): ${test_sets}"
    for dset in ${test_sets}; do
        need "${asr_exp}/${inference_tag}/${dset}/text" 8 "hypotheses for ${dset}"
        need "${data_feats}/${dset}/text" 4 "references for ${dset}"
    done
    for dset in ${test_sets}; do
        _dir=${asr_exp}/${inference_tag}/${dset}
        for unit in ${score_units}; do
            if [ "${unit}" = char ]; then _name=cer; else _name=wer; fi
            rm -rf "${_dir:?}/score_${_name}"
            _opts=()
            [ -f "${data_feats}/${dset}/utt2spk" ] && _opts+=(--utt2spk "${data_feats}/${dset}/utt2spk")
            [ "${nlsyms_txt}" != none ] && _opts+=(--non_linguistic_symbols "${nlsyms_txt}")
            "${python}" -m espnet_iml.recipe.score --ref "${data_feats}/${dset}/text" \
                --hyp "${_dir}/text" --unit "${unit}" --out "${_dir}/score_${_name}" "${_opts[@]}" \
                >"${_dir}/score_${_name}.log" 2>&1 \
                || fail_with_log "${_dir}/score_${_name}.log" "scoring ${dset} failed"
            # score.json holds percentages (err, sub, del, ins) and counts (n_snt, n_ref).
            "${python}" - "${_dir}/score_${_name}/score.json" "${dset}" "${_name}" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
unit = "chars" if sys.argv[3] == "cer" else "words"
print(f"    {sys.argv[2]:<16} {sys.argv[3].upper()} {s['err']:6.2f} %  (sub {s['sub']:.2f}, del {s['del']:.2f},"
      f" ins {s['ins']:.2f}; {s['n_snt']} utterances, {s['n_ref']} {unit})")
EOF
        done
    done
    stage_end
fi

# 10. Results table
if ! "${skip_eval}" && run_stage 10; then
    stage_begin 10 "results -> ${results_md}"
    _found=false
    for dset in ${test_sets}; do
        for f in "${asr_exp}/${inference_tag}/${dset}"/score_*/score.json; do
            [ -f "${f}" ] && _found=true
        done
    done
    "${_found}" || die "stage 10 needs scores under ${asr_exp}/${inference_tag}/<set>/score_*/score.json: run stage 9 first (--stage 9)"
    # Every experiment of this recipe that has scores, so that models can be compared.
    _exps=()
    for d in "${expdir}"/asr_*; do
        [ -d "${d}" ] || continue
        case "$(basename "${d}")" in asr_stats_*) continue ;; esac
        compgen -G "${d}/*/*/score_*/score.json" >/dev/null && _exps+=("${d}")
    done
    "${python}" -m espnet_iml.recipe.results --exp_dirs "${asr_exp}" --out "${asr_exp}/RESULTS.md"
    "${python}" -m espnet_iml.recipe.results --exp_dirs "${_exps[@]}" --out "${results_md}"
    awk '/^## Results/ { on = 1; next } /^## / { on = 0 } on' "${results_md}"
    stage_end
fi

# 11. Energy report (optional)
if ! "${skip_eval}" && run_stage 11; then
    stage_begin 11 "theoretical inference energy"
    if [ "${energy}" = false ]; then
        log "--energy false: skipped"
    elif ! pymod espnet_iml.bin.energy; then
        if [ "${energy}" = true ]; then
            die "stage 11 needs the module espnet_iml.bin.energy, which is not installed in ${python}"
        fi
        log "skipped: the module espnet_iml.bin.energy is not installed (pass --energy false to silence, --energy true to require it)"
    else
        need "${asr_exp}/${inference_asr_model}" 7 "the averaged checkpoint"
        _dset=${test_sets%% *}
        need "${data_feats}/${_dset}/feats.scp" 4 "features of ${_dset}"
        _out=${asr_exp}/${inference_tag}/energy
        rm -rf "${_out:?}"
        mkdir -p "${_out}"
        # shellcheck disable=SC2086
        "${python}" -m espnet_iml.bin.energy \
            --asr_train_config "${asr_exp}/config.yaml" \
            --asr_model_file "${asr_exp}/${inference_asr_model}" \
            --data_path_and_name_and_type "${data_feats}/${_dset}/feats.scp,speech,kaldi_ark" \
            --output_dir "${_out}" ${energy_args} 2>"${_out}/energy.log" \
            | tee "${_out}/report.txt" || fail_with_log "${_out}/energy.log" "energy report failed"
    fi
    stage_end
fi

log "finished stages ${stage}..$(min "${stop_stage}" 11) in ${SECONDS} s"
