"""Sentence generators for our synthetic stand-ins of LibriSpeech and AiShell-1 (OUR DESIGN).

Each language has a small probabilistic grammar: sentences have structure (subject, verb,
object, prepositional and time phrases, clauses joined by conjunctions), so the attention
decoder has a language to learn, and words inside each class are drawn with Zipf weights
(the first word of a list is the most frequent), so function words dominate and content words
have a long tail, as in real text. A grammar rather than a text dump keeps the corpus
deterministic, licence-free and learnable in minutes.

English: about 400 words, none of which sounds like another in the list (no "red"/"read",
"no"/"know", "for"/"four", ...), so the audio of a word determines its spelling.
Mandarin: news-style sentences in Chinese characters, each word with its pinyin (tone numbers,
5 = neutral), which is what espeak-ng reads: its ``cmn`` dictionary misreads many characters,
while the ``cmn-latn-pinyin`` voice reads pinyin correctly.
"""

import random
from typing import Dict, List, Sequence, Tuple

ZIPF_EXPONENT = 1.0


def _words(block: str) -> Tuple[str, ...]:
    return tuple(block.split())


def pick(rng: random.Random, items: Sequence, exponent: float = ZIPF_EXPONENT):
    """One item, the k-th (0-based) with weight 1 / (k + 1) ** exponent."""
    weights = [1.0 / (k + 1) ** exponent for k in range(len(items))]
    return rng.choices(items, weights)[0]


# ----------------------------------------------------------------------------------- English
DETERMINERS = _words("the a this that every his her my some another")
ADJECTIVES = _words(
    """
    old little good young great small long dark strong large white black happy cold
    bright quiet poor rich warm green heavy kind tall wild brave strange gentle empty
    busy clever golden silver broken hungry lonely narrow simple sudden tired angry
    careful famous honest lovely proud silent thin yellow
    """
)
# (singular, plural): irregular plurals spelled out.
NOUNS: Tuple[Tuple[str, str], ...] = tuple(
    (s, p)
    for s, p in (w.split("/") if "/" in w else (w, w + "s") for w in """
    man/men woman/women child/children house door room king friend girl boy horse
    ship garden letter city river tree road/roads window table captain doctor village
    soldier mother father brother sister teacher farmer stranger forest mountain island
    bridge church castle school market street dog bird fish stone fire book story
    picture voice hand face heart morning evening winter summer country family question
    answer reason ring hat coat bottle basket lamp chair wall field flower song boat
    wagon kitchen station office candle blanket bell ladder pocket mirror map key
    """.split())
)
NAMES = _words(
    """
    john mary thomas anna robert alice william emma henry clara peter lucy arthur
    helen george martha edward julia frank rose
    """
)
SUBJECT_PRONOUNS = _words("he she they we i you")
OBJECT_PRONOUNS = _words("him them us me it you")
# (past tense, takes an object?)
VERBS: Tuple[Tuple[str, bool], ...] = tuple(
    [(v, True) for v in _words(
        """
        saw found took opened held brought kept left followed called carried watched
        remembered believed loved wanted asked helped answered closed painted visited
        cleaned pulled pushed dropped lifted touched counted fixed filled sold bought
        borrowed hid caught built washed
        """
    )]
    + [(v, False) for v in _words(
        """
        walked waited smiled laughed stopped listened returned slept worked danced
        shouted whispered trembled arrived wondered hurried rested prayed
        """
    )]
)
ADVERBS = _words(
    "slowly quickly again together suddenly quietly always never often gently carefully "
    "soon once alone"
)
PREPOSITIONS = _words("in on at near under behind across into from through over beside")
TIMES = _words(
    """
    yesterday today tomorrow then later afterwards
    """
)
TIME_PHRASES = (
    "in the morning", "at night", "that evening", "after dinner", "before noon",
    "in the spring", "last winter", "every sunday", "on monday", "at dawn",
)
CONJUNCTIONS = _words("and but because when while so until")
SPEECH_VERBS = _words("said thought knew felt hoped")
COPULA_ADJ = _words("very quite rather too")  # "too" sounds like nothing else in the list


def english_noun_phrase(rng: random.Random, plural_ok: bool = True) -> str:
    """Determiner (adjective) noun, or a name, or (rarely) a plural noun phrase."""
    r = rng.random()
    if r < 0.15:
        return pick(rng, NAMES)
    singular, plural = pick(rng, NOUNS)
    adjective = f" {pick(rng, ADJECTIVES)}" if rng.random() < 0.4 else ""
    if plural_ok and r < 0.3:
        return f"the{adjective} {plural}"
    return f"{pick(rng, DETERMINERS)}{adjective} {singular}"


def english_clause(rng: random.Random) -> str:
    """Subject, verb, object or complement, optional adverb and prepositional phrase."""
    subject = pick(rng, SUBJECT_PRONOUNS) if rng.random() < 0.35 else english_noun_phrase(rng)
    r = rng.random()
    if r < 0.1:
        return f"{subject} was {pick(rng, COPULA_ADJ)} {pick(rng, ADJECTIVES)}"
    verb, transitive = pick(rng, VERBS, 0.7)
    parts = [subject, verb]
    if transitive:
        obj = pick(rng, OBJECT_PRONOUNS) if rng.random() < 0.25 else english_noun_phrase(rng)
        parts.append(obj)
    if rng.random() < 0.2:
        parts.append(pick(rng, ADVERBS))
    if rng.random() < 0.3:
        parts.append(f"{pick(rng, PREPOSITIONS)} {english_noun_phrase(rng, plural_ok=False)}")
    return " ".join(parts)


MAX_WORDS = 12  # longer sentences are drawn again: short utterances make updates cheap


def english_text(rng: random.Random) -> str:
    """One sentence in lower case (3 to 12 words)."""
    while True:
        words = _english_words(rng)
        if len(words) <= MAX_WORDS:
            return " ".join(words)


def _english_words(rng: random.Random) -> List[str]:
    r = rng.random()
    if r < 0.5:
        s = english_clause(rng)
    elif r < 0.6:
        when = pick(rng, TIMES) if rng.random() < 0.5 else rng.choice(TIME_PHRASES)
        s = f"{when} {english_clause(rng)}"
    elif r < 0.75:
        s = f"{english_clause(rng)} {pick(rng, CONJUNCTIONS)} {english_clause(rng)}"
    elif r < 0.88:
        s = f"{pick(rng, SUBJECT_PRONOUNS)} {pick(rng, SPEECH_VERBS)} that {english_clause(rng)}"
    else:
        s = f"there was {english_noun_phrase(rng, plural_ok=False)} {pick(rng, PREPOSITIONS)} " \
            f"{english_noun_phrase(rng, plural_ok=False)}"
    words = s.split()
    if len(words) < 3:
        words += [pick(rng, ADVERBS)]
    return words


def english_vocabulary() -> List[str]:
    """Every word the English grammar can produce, sorted (lower case)."""
    words = set(DETERMINERS) | set(ADJECTIVES) | set(NAMES) | set(SUBJECT_PRONOUNS)
    words |= set(OBJECT_PRONOUNS) | {v for v, _ in VERBS} | set(ADVERBS) | set(PREPOSITIONS)
    words |= set(TIMES) | {w for p in TIME_PHRASES for w in p.split()} | set(CONJUNCTIONS)
    words |= set(SPEECH_VERBS) | set(COPULA_ADJ) | {"was", "that", "there", "the"}
    words |= {w for pair in NOUNS for w in pair}
    return sorted(words)


def english_sentence(rng: random.Random) -> Tuple[str, str]:
    """(LibriSpeech transcript in upper case, text for the synthesizer in lower case)."""
    # espeak-ng may spell short all-caps words as acronyms, so it gets lower case.
    words = english_text(rng)
    return words.upper(), words


# ----------------------------------------------------------------------------------- Mandarin
def _lexicon(block: str) -> Dict[str, str]:
    """'汉字=han4 zi4; ...' -> {'汉字': 'han4 zi4', ...}."""
    out = {}
    for item in block.replace("\n", " ").split(";"):
        if item.strip():
            word, pinyin = item.split("=")
            out[word.strip()] = " ".join(pinyin.split())
    return out


ZH_SUBJECTS = _lexicon(
    """
    记者=ji4 zhe3; 公司=gong1 si1; 政府=zheng4 fu3; 专家=zhuan1 jia1; 我们=wo3 men5;
    他们=ta1 men5; 市民=shi4 min2; 银行=yin2 hang2; 企业=qi3 ye4; 学生=xue2 sheng1;
    老师=lao3 shi1; 消费者=xiao1 fei4 zhe3; 警方=jing3 fang1; 球队=qiu2 dui4;
    开发商=kai1 fa1 shang1; 用户=yong4 hu4; 医生=yi1 sheng1; 部门=bu4 men2; 网友=wang3 you3;
    投资者=tou2 zi1 zhe3
    """
)
ZH_TIMES = _lexicon(
    """
    今天=jin1 tian1; 昨天=zuo2 tian1; 明天=ming2 tian1; 今年=jin1 nian2; 去年=qu4 nian2;
    目前=mu4 qian2; 上午=shang4 wu3; 下午=xia4 wu3; 晚上=wan3 shang5; 最近=zui4 jin4;
    本周=ben3 zhou1; 上个月=shang4 ge4 yue4
    """
)
ZH_PLACES = _lexicon(
    """
    北京=bei3 jing1; 上海=shang4 hai3; 广州=guang3 zhou1; 深圳=shen1 zhen4; 杭州=hang2 zhou1;
    南京=nan2 jing1; 成都=cheng2 du1; 武汉=wu3 han4; 天津=tian1 jin1; 西安=xi1 an1;
    市场=shi4 chang3; 医院=yi1 yuan4; 学校=xue2 xiao4; 会上=hui4 shang4; 当地=dang1 di4;
    全国=quan2 guo2
    """
)
ZH_ADVERBS = _lexicon(
    """
    已经=yi3 jing1; 正在=zheng4 zai4; 将=jiang1; 还=hai2; 也=ye3; 都=dou1; 不断=bu2 duan4;
    继续=ji4 xu4; 开始=kai1 shi3; 首次=shou3 ci4
    """
)
ZH_VERBS = _lexicon(
    """
    发布=fa1 bu4; 提高=ti2 gao1; 购买=gou4 mai3; 参加=can1 jia1; 出台=chu1 tai2;
    调整=tiao2 zheng3; 支持=zhi1 chi2; 关注=guan1 zhu4; 完成=wan2 cheng2; 解决=jie3 jue2;
    推出=tui1 chu1; 加强=jia1 qiang2; 降低=jiang4 di1; 公布=gong1 bu4; 讨论=tao3 lun4;
    了解=liao3 jie3; 建设=jian4 she4; 保护=bao3 hu4; 管理=guan3 li3; 增加=zeng1 jia1
    """
)
ZH_MODIFIERS = _lexicon(
    """
    新=xin1; 相关=xiang1 guan1; 重要=zhong4 yao4; 主要=zhu3 yao4; 更多=geng4 duo1;
    新的=xin1 de5; 全部=quan2 bu4; 一些=yi4 xie1
    """
)
ZH_OBJECTS = _lexicon(
    """
    政策=zheng4 ce4; 价格=jia4 ge2; 住房=zhu4 fang2; 比赛=bi3 sai4; 问题=wen4 ti2;
    产品=chan3 pin3; 服务=fu2 wu4; 工作=gong1 zuo4; 数据=shu4 ju4; 技术=ji4 shu4;
    项目=xiang4 mu4; 房价=fang2 jia4; 质量=zhi4 liang4; 环境=huan2 jing4; 交通=jiao1 tong1;
    安全=an1 quan2; 消息=xiao1 xi5; 计划=ji4 hua4; 信息=xin4 xi1; 资金=zi1 jin1;
    手机=shou3 ji1; 汽车=qi4 che1; 电影=dian4 ying3; 学校=xue2 xiao4; 医院=yi1 yuan4
    """
)
ZH_TOPICS = _lexicon(
    """
    房价=fang2 jia4; 成交量=cheng2 jiao1 liang4; 销售=xiao1 shou4; 经济=jing1 ji4;
    收入=shou1 ru4; 楼市=lou2 shi4; 股市=gu3 shi4; 人口=ren2 kou3; 天气=tian1 qi4;
    价格=jia4 ge2
    """
)
ZH_DEGREES = _lexicon("很=hen3; 非常=fei1 chang2; 比较=bi3 jiao4; 更=geng4; 十分=shi2 fen1")
ZH_ADJECTIVES = _lexicon(
    """
    高=gao1; 低=di1; 稳定=wen3 ding4; 重要=zhong4 yao4; 明显=ming2 xian3; 快=kuai4;
    大=da4; 好=hao3
    """
)
ZH_NUMBERS = _lexicon(
    "一=yi1; 二=er4; 三=san1; 四=si4; 五=wu3; 六=liu4; 七=qi1; 八=ba1; 九=jiu3; 十=shi2"
)
ZH_TRENDS = _lexicon("上涨=shang4 zhang3; 下降=xia4 jiang4; 增长=zeng1 zhang3; 下跌=xia4 die1")
ZH_FUNCTION = _lexicon(
    "在=zai4; 的=de5; 了=le5; 表示=biao3 shi4; 百分之=bai3 fen1 zhi1; 据=ju4; 和=he2"
)


def _zh(rng: random.Random, table: Dict[str, str], exponent: float = ZIPF_EXPONENT) -> str:
    return pick(rng, list(table), exponent)


def _zh_clause(rng: random.Random) -> List[str]:
    """Subject [time] [adverb] [在 place] verb [modifier] object."""
    words = [_zh(rng, ZH_SUBJECTS)]
    if rng.random() < 0.4:
        words.append(_zh(rng, ZH_TIMES))
    if rng.random() < 0.5:
        words.append(_zh(rng, ZH_ADVERBS))
    if rng.random() < 0.3:
        words += ["在", _zh(rng, ZH_PLACES)]
    words.append(_zh(rng, ZH_VERBS, 0.7))
    if rng.random() < 0.35:
        words.append(_zh(rng, ZH_MODIFIERS))
    words.append(_zh(rng, ZH_OBJECTS, 0.7))
    return words


def mandarin_words(rng: random.Random) -> List[str]:
    """One sentence as a list of words (characters)."""
    r = rng.random()
    if r < 0.5:
        return _zh_clause(rng)
    if r < 0.7:
        # 北京 的 房价 非常 高
        return [_zh(rng, ZH_PLACES), "的", _zh(rng, ZH_TOPICS), _zh(rng, ZH_DEGREES),
                _zh(rng, ZH_ADJECTIVES)]
    if r < 0.85:
        # 今年 房价 上涨 了 百分之 五
        head = [_zh(rng, ZH_TIMES)] if rng.random() < 0.6 else [_zh(rng, ZH_PLACES)]
        return head + [_zh(rng, ZH_TOPICS), _zh(rng, ZH_TRENDS), "了", "百分之",
                       _zh(rng, ZH_NUMBERS, 0.3)]
    # 记者 表示 <clause>  /  据 记者 了解 ...
    return [_zh(rng, ZH_SUBJECTS), "表示"] + _zh_clause(rng)


MANDARIN_WORDS: Dict[str, str] = {}
for _table in (ZH_SUBJECTS, ZH_TIMES, ZH_PLACES, ZH_ADVERBS, ZH_VERBS, ZH_MODIFIERS, ZH_OBJECTS,
               ZH_TOPICS, ZH_DEGREES, ZH_ADJECTIVES, ZH_NUMBERS, ZH_TRENDS, ZH_FUNCTION):
    MANDARIN_WORDS.update(_table)


def mandarin_characters() -> List[str]:
    """The distinct characters of the Mandarin vocabulary, sorted."""
    return sorted({ch for word in MANDARIN_WORDS for ch in word})


def mandarin_sentence(rng: random.Random) -> Tuple[str, str]:
    """(AiShell transcript: words in characters joined by spaces, pinyin for espeak-ng)."""
    words = mandarin_words(rng)
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
