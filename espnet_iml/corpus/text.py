"""Sentence generators for our synthetic stand-ins of LibriSpeech and AiShell-1.

Small closed vocabularies so that a model can learn them on two CPU cores in minutes:
English words are common words without homophones inside the list (so that the audio of a
word determines its spelling); Mandarin words are common words in Chinese characters, each
with its pinyin (tone numbers, 5 = neutral tone), which is what espeak-ng reads: its ``cmn``
dictionary (espeak-ng 1.51) sends the pinyin of many characters to the English rules, while
the ``cmn-latn-pinyin`` voice reads pinyin correctly.
"""

import random
from typing import Dict, List, Sequence, Tuple

# Common English words, lower case here, upper case in LibriSpeech transcripts. No pair in
# the list sounds alike (no "to"/"two", "read"/"red", "right"/"write", ...).
ENGLISH_WORDS: Tuple[str, ...] = tuple(
    """
    the and of in with from but not all very
    little good great old new long small large young happy dark cold warm bright quiet
    strong early late red green black white yellow brown blue
    man woman child friend father mother brother sister king queen doctor teacher captain
    soldier farmer stranger house room door window table chair garden street city village
    river mountain forest island field road bridge church castle school market ship train
    horse dog bird fish tree flower stone fire water bread money letter paper book story
    picture music voice hand face eye heart head morning evening night summer winter
    spring year moment world country people family question answer reason number color
    go come make take see know find think tell give bring keep hold stand walk run speak
    listen open close turn call carry follow remember believe wait watch begin leave
    return travel write sing dance laugh smile
    one two three five six seven nine ten hundred thousand
    always never often again together perhaps today tomorrow yesterday slowly suddenly
    """.split()
)

# Common Mandarin words (news and daily life, as in AiShell-1) -> pinyin read by espeak-ng.
MANDARIN_WORDS: Dict[str, str] = {
    "市场": "shi4 chang3", "经济": "jing1 ji4", "公司": "gong1 si1", "发展": "fa1 zhan3",
    "城市": "cheng2 shi4", "房价": "fang2 jia4", "政府": "zheng4 fu3", "企业": "qi3 ye4",
    "银行": "yin2 hang2", "投资": "tou2 zi1", "北京": "bei3 jing1", "上海": "shang4 hai3",
    "中国": "zhong1 guo2", "今年": "jin1 nian2", "增长": "zeng1 zhang3", "记者": "ji4 zhe3",
    "表示": "biao3 shi4", "目前": "mu4 qian2", "已经": "yi3 jing1", "我们": "wo3 men5",
    "他们": "ta1 men5", "这个": "zhe4 ge4", "没有": "mei2 you3", "可以": "ke3 yi3",
    "还是": "hai2 shi4", "但是": "dan4 shi4", "因为": "yin1 wei4", "所以": "suo3 yi3",
    "如果": "ru2 guo3", "问题": "wen4 ti2", "工作": "gong1 zuo4", "时间": "shi2 jian1",
    "国家": "guo2 jia1", "成交": "cheng2 jiao1", "楼市": "lou2 shi4", "而": "er2",
    "对": "dui4", "在": "zai4", "是": "shi4", "有": "you3", "和": "he2", "的": "de5",
    "了": "le5", "也": "ye3", "都": "dou1", "很": "hen3", "大": "da4", "小": "xiao3",
    "新": "xin1", "高": "gao1", "多": "duo1", "上涨": "shang4 zhang3",
    "下降": "xia4 jiang4", "价格": "jia4 ge2", "人民": "ren2 min2", "社会": "she4 hui4",
    "服务": "fu2 wu4", "生活": "sheng1 huo2", "学生": "xue2 sheng1", "老师": "lao3 shi1",
    "学校": "xue2 xiao4", "医院": "yi1 yuan4", "汽车": "qi4 che1", "电话": "dian4 hua4",
    "手机": "shou3 ji1", "网络": "wang3 luo4", "技术": "ji4 shu4", "数据": "shu4 ju4",
    "平台": "ping2 tai2", "用户": "yong4 hu4", "一": "yi1", "两": "liang3", "三": "san1",
    "五": "wu3", "十": "shi2", "百": "bai3", "万": "wan4", "年": "nian2", "月": "yue4",
    "明天": "ming2 tian1", "天气": "tian1 qi4", "比赛": "bi3 sai4", "球队": "qiu2 dui4",
    "电影": "dian4 ying3", "音乐": "yin1 yue4", "朋友": "peng2 you5", "家庭": "jia1 ting2",
    "孩子": "hai2 zi5", "重要": "zhong4 yao4", "需要": "xu1 yao4", "开始": "kai1 shi3",
    "进行": "jin4 xing2", "通过": "tong1 guo4", "提高": "ti2 gao1", "影响": "ying3 xiang3",
    "情况": "qing2 kuang4", "部门": "bu4 men2", "管理": "guan3 li3", "销售": "xiao1 shou4",
    "房地产": "fang2 di4 chan3", "住房": "zhu4 fang2", "调控": "tiao2 kong4",
    "政策": "zheng4 ce4", "交通": "jiao1 tong1", "安全": "an1 quan2", "发布": "fa1 bu4",
    "消费者": "xiao1 fei4 zhe3", "产品": "chan3 pin3", "质量": "zhi4 liang4",
    "环境": "huan2 jing4", "保护": "bao3 hu4",
}

MIN_WORDS, MAX_WORDS = 2, 5


def mandarin_characters() -> List[str]:
    """The distinct characters of the Mandarin vocabulary, sorted."""
    return sorted({ch for word in MANDARIN_WORDS for ch in word})


def sample_words(rng: random.Random, vocab: Sequence[str]) -> List[str]:
    """2 to 5 distinct words drawn uniformly (uniform so every word is seen in training)."""
    return rng.sample(list(vocab), rng.randint(MIN_WORDS, MAX_WORDS))


def english_sentence(rng: random.Random) -> Tuple[str, str]:
    """(LibriSpeech transcript in upper case, text for espeak-ng in lower case)."""
    words = sample_words(rng, ENGLISH_WORDS)
    # espeak-ng may spell short all-caps words as acronyms, so it gets lower case.
    return " ".join(words).upper(), " ".join(words)


def mandarin_sentence(rng: random.Random) -> Tuple[str, str]:
    """(AiShell transcript: words in characters joined by spaces, pinyin for espeak-ng)."""
    words = sample_words(rng, sorted(MANDARIN_WORDS))
    return " ".join(words), " ".join(MANDARIN_WORDS[w] for w in words)


def pinyin_initial_final(syllable: str) -> Tuple[str, str]:
    """Split a toned pinyin syllable the way AiShell's lexicon does (approximately).

    Zero-initial syllables get the pseudo-initials aa/ee/ii/oo/uu/vv of that lexicon.
    """
    for ini in ("zh", "ch", "sh", "b", "p", "m", "f", "d", "t", "n", "l", "g", "k", "h",
                "j", "q", "x", "r", "z", "c", "s"):
        if syllable.startswith(ini):
            final = syllable[len(ini):]
            if ini in ("j", "q", "x") and final.startswith("u"):
                final = "v" + final[1:]  # ju = jü
            return ini, final
    if syllable.startswith("yu"):
        return "vv", "v" + syllable[2:]
    if syllable.startswith("yi"):
        return "ii", syllable[1:]
    if syllable.startswith("y"):
        return "ii", "i" + syllable[1:]
    if syllable.startswith("wu"):
        return "uu", syllable[1:]
    if syllable.startswith("w"):
        return "uu", "u" + syllable[1:]
    return syllable[0] * 2, syllable


def mandarin_lexicon_lines() -> List[str]:
    """resource_aishell/lexicon.txt lines for our vocabulary: word, then initials/finals."""
    lines = ["SIL sil", "<SPOKEN_NOISE> sil"]
    for word in sorted(MANDARIN_WORDS):
        phones = [p for syl in MANDARIN_WORDS[word].split() for p in pinyin_initial_final(syl)]
        lines.append(f"{word} {' '.join(phones)}")
    return lines
