"""演示数据: a small but realistic county (清河区) for ``sidan serve --demo`` and ``sidan seed-demo``.

1 中心 → 3 所 → 9 站, the 12 service projects of the county menu plus a few station items, teams at
every level, fixed demo accounts (password ``sidan-demo``) and orders in every state of the state
machine. Orders are driven through ``place_order`` and ``apply`` so their timelines, outbox
rows, service records and ratings are exactly what the real workflow writes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Final

from pydantic import BaseModel
from sqlalchemy import exists, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import SYSTEM_ACTOR, Actor, Caller, hash_password, load_actor
from app.config import Settings, get_settings
from app.db import create_engine, create_sessionmaker
from app.domain import Action, Channel, Role, Status, UnitLevel
from app.models import (
    MenuCategory,
    MenuItem,
    OrgUnit,
    Team,
    TeamMember,
    User,
    Volunteer,
    team_categories,
    volunteer_categories,
)
from app.schemas.orders import OrderCreate
from app.services.applying import apply, apply_as_system
from app.services.ordering import place_order
from app.workflow import ACTIONS

log = logging.getLogger(__name__)

DEMO_PASSWORD: Final = "sidan-demo"
BEIJING: Final = timezone(timedelta(hours=8), "CST")

CENTER, INSTITUTE, STATION = UnitLevel.CENTER, UnitLevel.INSTITUTE, UnitLevel.STATION

# ---- the county --------------------------------------------------------------------------------

# fmt: off
# key: (parent key, level, name, code, address, (lat, lng))
UNITS: Final[dict[str, tuple[str | None, UnitLevel, str, str, str, tuple[float, float]]]] = {
    "center": (None, CENTER, "清河区新时代文明实践中心", "QH",
               "清河区人民路88号区文化中心三楼", (36.6512, 117.1201)),
    "chengguan": ("center", INSTITUTE, "城关街道新时代文明实践所", "QH-CG",
                  "城关街道府前街12号", (36.6549, 117.1156)),
    "liuwan": ("center", INSTITUTE, "柳湾镇新时代文明实践所", "QH-LW",
               "柳湾镇政府路6号", (36.5873, 117.0682)),
    "shuangqiao": ("center", INSTITUTE, "双桥镇新时代文明实践所", "QH-SQ",
                   "双桥镇商贸街21号", (36.7021, 117.1935)),
    "xingfuli": ("chengguan", STATION, "幸福里社区新时代文明实践站", "QH-CG-XFL",
                 "幸福里小区3号楼底商", (36.6571, 117.1189)),
    "nanguan": ("chengguan", STATION, "南关社区新时代文明实践站", "QH-CG-NG",
                "南关社区和平路45号", (36.6478, 117.1132)),
    "wenchang": ("chengguan", STATION, "文昌社区新时代文明实践站", "QH-CG-WC",
                 "文昌苑社区服务中心", (36.6602, 117.1240)),
    "liuwancun": ("liuwan", STATION, "柳湾村新时代文明实践站", "QH-LW-LWC",
                  "柳湾村党群服务中心", (36.5861, 117.0657)),
    "yangjiazhuang": ("liuwan", STATION, "杨家庄村新时代文明实践站", "QH-LW-YJZ",
                      "杨家庄村文化大院", (36.5790, 117.0731)),
    "lijiabao": ("liuwan", STATION, "李家堡村新时代文明实践站", "QH-LW-LJB",
                 "李家堡村委会", (36.5952, 117.0548)),
    "shuangqiaosq": ("shuangqiao", STATION, "双桥社区新时代文明实践站", "QH-SQ-SQ",
                     "双桥社区便民服务大厅", (36.7035, 117.1920)),
    "donggang": ("shuangqiao", STATION, "东岗村新时代文明实践站", "QH-SQ-DG",
                 "东岗村农家书屋", (36.7110, 117.2046)),
    "taoyuan": ("shuangqiao", STATION, "桃园村新时代文明实践站", "QH-SQ-TY",
                "桃园村文化广场", (36.6950, 117.2103)),
}

# The 12 service projects (服务项目) of the county menu: (code, name).
CATEGORIES: Final[tuple[tuple[str, str], ...]] = (
    ("party_pioneer", "我是党员我带头"), ("theory", "理论宣讲"), ("culture", "文化惠民"),
    ("science", "科学普及"), ("legal", "法律服务"), ("youth", "青春先行"),
    ("education", "幸福教育"), ("nature", "关爱自然"), ("traffic", "文明交通"),
    ("medical", "爱心医疗"), ("red_cross", "红十字"), ("disability", "筑爱助残"),
)

# key: (unit key, category code, name, description, auto_approve (免审))
ITEMS: Final[dict[str, tuple[str, str, str, str, bool]]] = {
    "party_post": ("center", "party_pioneer", "党员先锋岗帮办代办",
                   "党员志愿者上门帮独居、高龄老人代缴水电费、代购药品、代办证照", False),
    "party_pair": ("center", "party_pioneer", "党员结对帮扶困难家庭",
                   "党员与困难家庭一对一结对，定期走访、解决实际困难", False),
    "theory_talk": ("center", "theory", "党的创新理论百姓宣讲",
                    "百姓宣讲团用身边事讲清大道理，30–60分钟，可进小区、进田间", False),
    "anti_fraud": ("center", "theory", "防范电信网络诈骗宣讲",
                   "结合真实案例讲解养老诈骗、刷单返利等常见骗局", False),
    "opera": ("center", "culture", "送戏下乡文艺演出",
              "区艺术团及民间文艺队送吕剧、快板、广场舞等节目", False),
    "movie": ("center", "culture", "送电影进村入社区", "露天电影放映一场，含场地布置", False),
    "couplets": ("center", "culture", "书法春联进万家", "书法志愿者现场书写春联、福字", False),
    "science_van": ("center", "science", "科普大篷车进社区",
                    "科普展品巡展与互动实验，适合中小学生和老年人", False),
    "farm_training": ("center", "science", "农业实用技术培训",
                      "农技专家讲授种植、病虫害防治、农机使用", False),
    "legal_advice": ("center", "legal", "法律咨询进社区",
                     "律师、法律工作者现场解答婚姻家庭、劳动、邻里纠纷等问题", False),
    "mediation": ("center", "legal", "家庭矛盾纠纷调解", "人民调解员上门调解家庭、邻里矛盾", False),
    "summer_care": ("center", "youth", "青少年暑期托管",
                    "大学生志愿者开展作业辅导、安全教育、兴趣课程", False),
    "youth_teach": ("center", "youth", "大学生志愿者支教", "周末为农村学校开设美术、音乐、科学课", False),
    "parenting": ("center", "education", "家庭教育讲座", "家庭教育指导师讲亲子沟通、青春期教育", False),
    "smartphone": ("center", "education", "老年人智能手机培训",
                   "一对一教老人用微信视频、扫码、网上挂号", False),
    "river_patrol": ("center", "nature", "河道清洁巡护", "清理河道垃圾，劝导乱扔乱倒", False),
    "tree_planting": ("center", "nature", "植树护绿", "义务植树、绿地认养与养护", False),
    "traffic_persuade": ("center", "traffic", "文明交通劝导",
                         "路口劝导闯红灯、不戴头盔等不文明交通行为", False),
    "school_guard": ("center", "traffic", "学校周边护学岗", "上下学时段在校门口维护交通秩序", False),
    "free_clinic": ("center", "medical", "健康义诊",
                    "医护志愿者测血压、血糖，提供用药咨询（免审，提交即受理）", True),
    "home_health": ("center", "medical", "上门测血压血糖", "为行动不便的老人上门测量并记录健康数据", False),
    "first_aid": ("center", "red_cross", "应急救护培训", "心肺复苏、AED使用、海姆立克急救法培训", False),
    "blood_drive": ("center", "red_cross", "无偿献血宣传", "无偿献血知识宣传与献血活动组织", False),
    "disability_visit": ("center", "disability", "残疾人上门探访",
                         "探访残疾人家庭，帮助申请补贴、辅具", False),
    "rehab_escort": ("center", "disability", "助残康复陪护", "陪同残疾人到康复机构训练、就医", False),
    # 站 personalized items (本站特色菜单)
    "after_school": ("xingfuli", "education", "四点半课堂",
                     "放学后为双职工家庭孩子提供作业辅导和看护", False),
    "haircut": ("xingfuli", "disability", "爱心义剪上门服务",
                "理发志愿者为残疾人、卧床老人上门理发（免审）", True),
    "wish_wall": ("xingfuli", "party_pioneer", "楼道微心愿认领", "党员认领居民张贴的微心愿", False),
    "orchard": ("liuwancun", "science", "果树修剪技术指导",
                "农技志愿者到果园现场指导苹果、桃树修剪", False),
    "village_rules": ("liuwancun", "theory", "村规民约宣讲", "结合移风易俗讲解村规民约", False),
    "square_dance": ("shuangqiaosq", "culture", "广场舞教学", "文艺骨干教授广场舞、健身操", False),
    "left_behind": ("donggang", "youth", "留守儿童周末陪伴",
                    "周末陪伴留守儿童读书、做手工、视频联系父母", False),
}

# username: (unit key, display name)
ADMINS: Final[dict[str, tuple[str, str]]] = {
    "center_admin": ("center", "张卫东（区文明实践中心）"),
    "suo_admin": ("chengguan", "李红梅（城关街道实践所）"),
    "zhan_admin": ("xingfuli", "王海燕（幸福里社区实践站）"),
}

# username: (real name, home unit key, skills)
VOLUNTEERS: Final[dict[str, tuple[str, str, tuple[str, ...]]]] = {
    "volunteer01": ("刘晓丽", "xingfuli", ("医疗护理", "智能手机教学")),
    "volunteer02": ("张建国", "xingfuli", ("医疗护理", "理论宣讲")),
    "volunteer03": ("李秀英", "xingfuli", ("助残服务", "心理疏导")),
    "volunteer04": ("王志强", "xingfuli", ("家电维修", "驾驶")),
    "volunteer05": ("陈晓燕", "xingfuli", ("教育辅导", "手工")),
    "volunteer06": ("杨明", "xingfuli", ("家电维修", "电脑")),
    "volunteer07": ("赵丽娟", "nanguan", ("交通劝导", "摄影")),
    "volunteer08": ("黄海涛", "nanguan", ("法律咨询",)),
    "volunteer09": ("周文静", "wenchang", ("文艺表演", "电影放映")),
    "volunteer10": ("吴国庆", "chengguan", ("理论宣讲", "书法")),
    "volunteer11": ("徐卫东", "liuwancun", ("农技", "果树修剪")),
    "volunteer12": ("孙伟", "liuwancun", ("农技", "农机维修")),
    "volunteer13": ("马玉兰", "yangjiazhuang", ("环境保护", "文艺表演")),
    "volunteer14": ("朱宏伟", "lijiabao", ("理论宣讲", "驾驶")),
    "volunteer15": ("胡晓梅", "liuwan", ("教育辅导", "心理疏导")),
    "volunteer16": ("郭建军", "shuangqiaosq", ("应急救护", "医疗护理")),
    "volunteer17": ("何丽", "shuangqiaosq", ("文艺表演", "舞蹈")),
    "volunteer18": ("高峰", "donggang", ("教育辅导", "体育")),
    "volunteer19": ("林芳", "taoyuan", ("助残服务", "医疗护理")),
    "volunteer20": ("罗志刚", "shuangqiao", ("应急救护", "驾驶")),
    "volunteer21": ("梁艳", "nanguan", ("人民调解", "法律咨询")),
    "volunteer22": ("宋佳", "wenchang", ("书法", "摄影")),
    "volunteer23": ("郑浩然", "liuwancun", ("农技", "电脑")),
    "volunteer24": ("谢雨欣", "yangjiazhuang", ("教育辅导", "环境保护")),
    "volunteer25": ("韩冬梅", "shuangqiaosq", ("医疗护理", "献血宣传")),
    "volunteer26": ("唐俊杰", "taoyuan", ("环境保护", "驾驶")),
    "volunteer27": ("冯晓丽", "donggang", ("助残服务", "手语")),
    "volunteer28": ("于海洋", "lijiabao", ("农技", "家电维修")),
    "volunteer29": ("董雪", "chengguan", ("心理疏导", "教育辅导")),
    "volunteer30": ("萧振华", "liuwan", ("理论宣讲", "摄影")),
}

# key: (unit key, name, members (the first one leads), category codes)
TEAMS: Final[dict[str, tuple[str, str, tuple[str, ...], tuple[str, ...]]]] = {
    "corps": ("center", "清河区新时代文明实践志愿服务总队",
              ("volunteer10", "volunteer02", "volunteer14", "volunteer20", "volunteer30"),
              tuple(code for code, _ in CATEGORIES)),
    "chengguan": ("chengguan", "城关街道志愿服务大队",
                  ("volunteer29", "volunteer10", "volunteer08", "volunteer22"),
                  ("theory", "culture", "legal", "traffic")),
    "liuwan": ("liuwan", "柳湾镇志愿服务大队",
               ("volunteer15", "volunteer30", "volunteer14", "volunteer28"),
               ("theory", "science", "nature", "culture")),
    "shuangqiao": ("shuangqiao", "双桥镇志愿服务大队",
                   ("volunteer20", "volunteer16", "volunteer26"),
                   ("medical", "red_cross", "youth")),
    "silver": ("xingfuli", "幸福里社区“银发先锋”志愿服务队",
               ("volunteer02", "volunteer01", "volunteer03", "volunteer04"),
               ("party_pioneer", "medical", "disability", "education")),
    "xingfuli_youth": ("xingfuli", "幸福里社区青年志愿服务队",
                       ("volunteer05", "volunteer06", "volunteer01"),
                       ("youth", "education", "culture")),
    "nanguan_traffic": ("nanguan", "南关社区文明交通志愿服务队",
                        ("volunteer07", "volunteer21"), ("traffic", "legal")),
    "orchard": ("liuwancun", "柳湾村农技志愿服务队",
                ("volunteer11", "volunteer12", "volunteer23"), ("science", "nature")),
    "red_cross": ("shuangqiaosq", "双桥社区红十字救护队",
                  ("volunteer16", "volunteer25", "volunteer17"), ("red_cross", "medical")),
    "donggang_care": ("donggang", "东岗村助残志愿服务队",
                      ("volunteer27", "volunteer18"), ("disability", "youth")),
}

# username: (display name, home 站, address)
RESIDENTS: Final[dict[str, tuple[str, str, str]]] = {
    "resident01": ("王秀兰", "xingfuli", "幸福里小区5号楼2单元301室"),
    "resident02": ("李德福", "xingfuli", "幸福里小区2号楼1单元102室"),
    "resident03": ("张桂芳", "xingfuli", "幸福里小区8号楼3单元501室"),
    "resident04": ("刘淑珍", "xingfuli", "幸福里小区1号楼1单元201室"),
    "resident05": ("陈玉梅", "xingfuli", "幸福里小区6号楼2单元402室"),
    "resident06": ("赵国华", "nanguan", "南关社区和平路17号院3号楼"),
    "resident07": ("孙凤英", "nanguan", "南关社区新华街9号"),
    "resident08": ("周永安", "wenchang", "文昌苑小区12栋1单元601室"),
    "resident09": ("吴桂香", "liuwancun", "柳湾村三组28号"),
    "resident10": ("郑德明", "liuwancun", "柳湾村一组6号"),
    "resident11": ("冯淑英", "yangjiazhuang", "杨家庄村东街15号"),
    "resident12": ("朱长林", "lijiabao", "李家堡村二组41号"),
    "resident13": ("许翠花", "shuangqiaosq", "双桥社区花园小区4号楼"),
    "resident14": ("何振国", "shuangqiaosq", "双桥社区商贸街33号"),
    "resident15": ("吕秀珍", "donggang", "东岗村南街7号"),
    "resident16": ("施玉英", "taoyuan", "桃园村后街22号"),
    "resident17": ("张宝山", "xingfuli", "幸福里小区9号楼1单元101室"),
    "resident18": ("曹金凤", "nanguan", "南关社区和平路45号院"),
    "resident19": ("严志明", "liuwancun", "柳湾村二组13号"),
    "resident20": ("金秀梅", "shuangqiaosq", "双桥社区花园小区7号楼"),
}
# fmt: on

_PHONE_PREFIXES: Final = ("138", "139", "150", "151", "186", "187", "135", "177", "158", "189")


def demo_phone(n: int) -> str:
    """A valid mainland mobile number (1[3-9] + 9 digits), distinct for each ``n`` below 10,000."""
    return f"{_PHONE_PREFIXES[n % len(_PHONE_PREFIXES)]}{(53_710_000 + n * 7_919) % 100_000_000:08d}"


# ---- the orders ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DemoOrder:
    """One demo order and how it travels through the state machine to ``status``."""

    resident: str | None  # the resident served; None: ordered by phone for someone without an account
    station: str
    what: str  # an ITEMS key, or a custom title (自定义需求)
    status: Status
    days_ago: float  # when it was placed (moved earlier if its steps would reach into the future)
    description: str = ""
    proxy: str | None = None  # 代点单: the volunteer or admin who placed it
    contact: tuple[str, str] | None = None  # (name, phone) when the resident has no account
    channel: Channel | None = None
    beneficiaries: int = 1
    via: str = "volunteer"  # "volunteer" (指令性派单), "team" (派给服务队), "pool" (抢单)
    volunteer: str | None = None  # who serves it
    team: str | None = None
    helpers: tuple[str, ...] = ()  # other participants in the service record
    hours: str = "2"
    summary: str = ""
    stars: int = 5
    tags: tuple[str, ...] = ()
    comment: str = ""
    rated_by_proxy: bool = False  # 代评: the proxy who placed it rates it
    reason: str = ""  # reject / cancel
    cancelled_by_admin: bool = False
    cancel_after_approve: bool = False
    declined_by: tuple[str, str] | None = None  # (volunteer, reason): 退单 before the final dispatch
    reopen_reason: str = ""  # rated, then 返工: ends in approved, round 2
    placed_at: str | None = None  # ordered at this unit (e.g. the 中心 hotline), then 层层派单 to ``station``
    transfer_reason: str = ""
    escalate_reason: str = ""  # 上报: the 站 hands it to its 所 first


S = Status

# fmt: off
ORDERS: Final[tuple[DemoOrder, ...]] = (
    # 幸福里社区 (zhan_admin) ------------------------------------------------------------------------
    DemoOrder("resident01", "xingfuli", "home_health", S.RATED, 20, volunteer="volunteer01",
              helpers=("volunteer02",), hours="1.5", tags=("耐心", "准时"),
              description="老伴中风后行动不便，想请志愿者每周上门量一次血压血糖",
              summary="上门为王秀兰老伴测量血压142/88、空腹血糖6.9，已记录并提醒按时服药",
              comment="小刘很耐心，还教我怎么记血压本，谢谢！"),
    DemoOrder("resident01", "xingfuli", "smartphone", S.COMPLETED, 2, volunteer="volunteer01", hours="1",
              description="想学用微信和孙子视频，还有手机上挂号",
              summary="一对一教会王阿姨微信视频通话和“健康清河”公众号预约挂号，并写了步骤卡片"),
    DemoOrder("resident02", "xingfuli", "legal_advice", S.POOLED, 0.3,
              description="儿子离婚后孙子的抚养权问题，想咨询一下律师"),
    DemoOrder("resident03", "xingfuli", "haircut", S.POOLED, 0.5, proxy="volunteer02",
              description="老人卧床半年，头发太长了，想请人上门理发"),
    DemoOrder("resident05", "xingfuli", "parenting", S.DISPATCHED, 0.1, volunteer="volunteer01",
              beneficiaries=2, description="孩子上初二，最近不爱和家里说话，想听听家庭教育讲座"),
    DemoOrder("resident04", "xingfuli", "disability_visit", S.ACCEPTED, 1, proxy="zhan_admin",
              channel=Channel.HOTLINE, via="team", team="silver", volunteer="volunteer03",
              description="家中有一名二级肢体残疾人，想了解轮椅申领和护理补贴政策"),
    DemoOrder("resident17", "xingfuli", "after_school", S.IN_SERVICE, 0.4, via="pool",
              volunteer="volunteer05",
              description="双职工家庭，孩子上三年级，放学后没人看，想报名四点半课堂"),
    DemoOrder("resident02", "xingfuli", "free_clinic", S.APPROVED, 0.1, beneficiaries=15,
              description="楼里十几位老人想一起做个义诊，量量血压血糖"),
    DemoOrder("resident01", "xingfuli", "区医院复查陪诊", S.SUBMITTED, 0.12,
              description="下周二上午要去区人民医院复查，子女在外地，想请志愿者陪同挂号取药"),
    DemoOrder("resident03", "xingfuli", "anti_fraud", S.SUBMITTED, 0.08, beneficiaries=20,
              description="楼里好几个老人接到过冒充医保局的电话，想请人来讲讲怎么防骗"),
    DemoOrder("resident05", "xingfuli", "first_aid", S.REJECTED, 6,
              description="想学心肺复苏，家里老人有心脏病",
              reason="应急救护培训由区红十字会统一排期，本月25日在社区活动室集中开班，欢迎报名参加"),
    DemoOrder("resident04", "xingfuli", "couplets", S.CANCELLED, 9,
              description="快过年了，想请书法志愿者写几副春联", reason="家里已经买好春联了，不需要了"),
    DemoOrder("resident17", "xingfuli", "home_health", S.CLOSED, 16, volunteer="volunteer02", hours="1",
              description="最近头晕，想请人上门量量血压",
              summary="上门测量血压150/95，建议尽快到社区卫生服务站就诊，已告知家属"),
    DemoOrder("resident02", "xingfuli", "家里洗衣机不转了", S.RATED, 12, volunteer="volunteer06",
              declined_by=("volunteer04", "当天要去医院照顾家人，无法前往"), stars=4, tags=("手艺好",),
              description="老式双缸洗衣机通电不转，想请懂维修的志愿者看看",
              summary="检查发现电机电容老化，已更换电容，洗衣机恢复正常",
              comment="修好了，就是来得晚了点"),
    DemoOrder("resident05", "xingfuli", "smartphone", S.APPROVED, 2.4, volunteer="volunteer04", hours="0.5",
              stars=2, tags=("时间短",),
              description="想学在手机上交医保、查社保",
              summary="讲解手机缴纳医保的步骤",
              comment="只教了一会儿就走了，还是不会用",
              reopen_reason="群众评价较低，安排返工：重新上门一对一辅导直至学会"),
    DemoOrder(None, "xingfuli", "party_post", S.APPROVED, 0.15, proxy="zhan_admin",
              channel=Channel.HOTLINE, contact=("孙福海", "13953124617"),
              description="独居老人孙大爷腿脚不便，电话求助代缴本月水电费并代购降压药"),
    # 南关社区、文昌社区 (suo_admin) -------------------------------------------------------------------
    DemoOrder("resident06", "nanguan", "traffic_persuade", S.RATED, 14, via="team", team="nanguan_traffic",
              volunteer="volunteer07", helpers=("volunteer21",), beneficiaries=200, tags=("认真负责",),
              description="和平路与新华街路口早高峰电动车闯红灯的很多，希望安排劝导",
              summary="早7:00–9:00在路口劝导闯红灯、不戴头盔行为63人次，发放宣传单120份",
              comment="路口秩序好多了"),
    DemoOrder("resident07", "nanguan", "legal_advice", S.DISPATCHED, 0.2, volunteer="volunteer08",
              description="老房子拆迁补偿协议有几条看不懂，想咨询律师"),
    DemoOrder("resident18", "nanguan", "mediation", S.ACCEPTED, 0.8, volunteer="volunteer21",
              beneficiaries=2, description="楼上楼下因为漏水闹矛盾好几个月了，想请调解员帮忙"),
    DemoOrder("resident06", "nanguan", "home_health", S.SUBMITTED, 0.1, proxy="volunteer07",
              description="网格员代邻居赵大爷点单：血压不稳，想约上门测血压"),
    DemoOrder("resident07", "nanguan", "独居老人心理疏导", S.ACCEPTED, 1, volunteer="volunteer29",
              description="老伴去世后整天不出门，话也少了，想请人来陪着说说话、疏导疏导",
              escalate_reason="本站暂无心理疏导专业志愿者，上报城关街道实践所统筹"),
    DemoOrder("resident08", "wenchang", "movie", S.COMPLETED, 1.5, via="pool", volunteer="volunteer09",
              helpers=("volunteer22",), hours="3", beneficiaries=120,
              description="小区广场想放一场露天电影，丰富一下夏天晚上的生活",
              summary="放映《我和我的祖国》，观影居民约150人，映前进行了防溺水宣传"),
    DemoOrder("resident08", "wenchang", "垃圾分类入户宣传", S.CANCELLED, 4, cancelled_by_admin=True,
              description="小区刚开始垃圾分类，很多老人不会分，希望有人入户讲讲",
              reason="与街道本周六统一组织的垃圾分类入户宣传活动重复，已合并办理"),
    # 柳湾镇 (center_admin) --------------------------------------------------------------------------
    DemoOrder("resident09", "liuwancun", "orchard", S.RATED, 25, via="team", team="orchard",
              volunteer="volunteer11", helpers=("volunteer12",), hours="3", beneficiaries=6,
              tags=("专业", "实用"),
              description="家里三亩苹果树，不会冬季修剪，请农技员来地里指导",
              summary="在吴桂香家果园现场示范苹果树冬剪，周边5户果农一起学习",
              comment="讲得明白，今年的果子肯定好"),
    DemoOrder("resident10", "liuwancun", "farm_training", S.IN_SERVICE, 0.3, volunteer="volunteer12",
              beneficiaries=30, description="村里种大棚的多，想请人讲讲黄瓜霜霉病怎么防"),
    DemoOrder("resident19", "liuwancun", "disability_visit", S.CLOSED, 18, proxy="volunteer11",
              volunteer="volunteer23", hours="1.5",
              description="网格员代严志明点单：腿有残疾，想申请残疾人两项补贴",
              summary="上门探访，协助填写残疾人两项补贴申请表，已交村委会"),
    DemoOrder("resident10", "liuwancun", "opera", S.APPROVED, 0.2, beneficiaries=300,
              description="秋收后想请艺术团来村里演一场吕剧"),
    DemoOrder("resident11", "yangjiazhuang", "tree_planting", S.REJECTED, 7,
              description="村东头荒坡想种些树，需要志愿者帮忙",
              reason="春季义务植树由柳湾镇统一组织，3月12日在杨家庄村东坡集中开展，届时欢迎参加"),
    DemoOrder("resident11", "yangjiazhuang", "free_clinic", S.POOLED, 0.5, beneficiaries=40,
              description="村里老人多，想请医生来做次义诊"),
    DemoOrder("resident12", "lijiabao", "theory_talk", S.DISPATCHED, 0.4, via="team", team="liuwan",
              beneficiaries=45, description="村里党员冬训，想请宣讲团来讲一堂"),
    # 双桥镇 (center_admin) --------------------------------------------------------------------------
    DemoOrder("resident13", "shuangqiaosq", "first_aid", S.RATED, 10, via="team", team="red_cross",
              volunteer="volunteer16", helpers=("volunteer25",), hours="2.5", beneficiaries=25,
              tags=("专业", "耐心"),
              description="小区广场舞队想学心肺复苏和AED使用",
              summary="为广场舞队25名队员开展心肺复苏、AED实操培训，20人通过考核",
              comment="手把手教，大家都学会了"),
    DemoOrder("resident14", "shuangqiaosq", "square_dance", S.ACCEPTED, 0.6, via="pool",
              volunteer="volunteer17", beneficiaries=18, description="新成立的舞蹈队想请老师教几支新舞"),
    DemoOrder("resident20", "shuangqiaosq", "blood_drive", S.COMPLETED, 1, volunteer="volunteer25",
              hours="3", beneficiaries=80,
              description="社区想组织一次献血宣传，请红十字志愿者支持",
              summary="设置献血宣传点一处，讲解献血知识，现场登记献血意向32人"),
    DemoOrder("resident14", "shuangqiaosq", "legal_advice", S.SUBMITTED, 0.05, channel=Channel.KIOSK,
              description="在外打工被拖欠工资，想咨询怎么维权"),
    DemoOrder("resident15", "donggang", "left_behind", S.RATED, 11, proxy="volunteer27",
              volunteer="volunteer18", hours="3", tags=("有爱心",), rated_by_proxy=True,
              description="孩子爸妈都在外地打工，想请志愿者周末陪孩子读读书",
              summary="陪伴两名留守儿童阅读绘本、制作手工贺卡，并与父母视频通话",
              comment="孩子很喜欢高老师（网格员代评）"),
    # 区中心热线 → 层层派单
    DemoOrder("resident17", "xingfuli", "party_pair", S.SUBMITTED, 0.1, proxy="center_admin",
              placed_at="center", channel=Channel.HOTLINE,
              description="张宝山老人独居，子女在外地，来电希望有党员定期上门看看",
              transfer_reason="属地办理：转幸福里社区实践站受理"),
    DemoOrder("resident16", "taoyuan", "river_patrol", S.CANCELLED, 5, cancel_after_approve=True,
              description="村南小河沟垃圾多，想请志愿者清理一下", reason="村里已组织党员清理过了，不需要了"),
    DemoOrder("resident16", "taoyuan", "rehab_escort", S.CLOSED, 15, volunteer="volunteer19", hours="4",
              description="儿子脑瘫，每周要去区康复中心训练，想请人陪同",
              summary="陪同施玉英母子到区残疾人康复中心训练，往返接送并协助训练"),
)
# fmt: on

# ---- loading ---------------------------------------------------------------------------------------


@dataclass
class _Ids:
    units: dict[str, int] = field(default_factory=dict)
    users: dict[str, int] = field(default_factory=dict)
    volunteers: dict[str, int] = field(default_factory=dict)
    teams: dict[str, int] = field(default_factory=dict)
    items: dict[str, int] = field(default_factory=dict)


async def seed_demo(database_url: str) -> bool:
    """Load the demo county into an empty database. False (and nothing loaded) if any unit exists."""
    settings = get_settings()
    engine = create_engine(database_url, settings)
    try:
        maker = create_sessionmaker(engine)
        password_hash = await hash_password(DEMO_PASSWORD)  # argon2 is slow: hash once, share it
        async with maker() as session, session.begin():
            # Two seeders at once: the second waits here, then sees the first one's units.
            await session.execute(text("LOCK TABLE org_units IN SHARE ROW EXCLUSIVE MODE"))
            if await session.scalar(select(exists().where(OrgUnit.id.is_not(None)))):
                return False
            ids = await _load_directory(session, password_hash)
        await _load_orders(maker, settings, ids)
        log.info("demo county loaded: %d units, %d orders", len(UNITS), len(ORDERS))
        return True
    finally:
        await engine.dispose()


async def _load_directory(session: AsyncSession, password_hash: str) -> _Ids:
    ids = _Ids()
    units: dict[str, OrgUnit] = {}
    for key, (parent_key, level, name, code, address, _) in UNITS.items():
        parent = units[parent_key] if parent_key else None
        org_unit = OrgUnit(
            parent_id=parent.id if parent else None,
            level=level.value,
            name=name,
            code=code,
            address=address,
            path="pending",
            depth=parent.depth + 1 if parent else 0,
        )
        session.add(org_unit)
        await session.flush()
        org_unit.path = f"{parent.path if parent else ''}{org_unit.id}."
        units[key] = org_unit
    await session.flush()
    ids.units = {k: u.id for k, u in units.items()}

    categories = {
        code: MenuCategory(name=name, code=code, sort_order=i) for i, (code, name) in enumerate(CATEGORIES, 1)
    }
    session.add_all(categories.values())
    await session.flush()
    items = {
        key: MenuItem(
            unit_id=ids.units[unit],
            category_id=categories[cat].id,
            name=name,
            description=desc,
            auto_approve=auto,
        )
        for key, (unit, cat, name, desc, auto) in ITEMS.items()
    }
    session.add_all(items.values())

    users: dict[str, User] = {}
    for n, (username, (unit, display)) in enumerate(ADMINS.items()):
        users[username] = User(
            username=username,
            password_hash=password_hash,
            role=Role.ADMIN.value,
            unit_id=ids.units[unit],
            display_name=display,
            phone=demo_phone(900 + n),
        )
    for n, (username, (real_name, unit, _)) in enumerate(VOLUNTEERS.items()):
        users[username] = User(
            username=username,
            password_hash=password_hash,
            role=Role.VOLUNTEER.value,
            unit_id=ids.units[unit],
            display_name=real_name,
            phone=demo_phone(n),
        )
    for n, (username, (display, unit, _)) in enumerate(RESIDENTS.items()):
        users[username] = User(
            username=username,
            password_hash=password_hash,
            role=Role.RESIDENT.value,
            unit_id=ids.units[unit],
            display_name=display,
            phone=demo_phone(500 + n),
        )
    session.add_all(users.values())
    await session.flush()
    ids.users = {k: u.id for k, u in users.items()}
    ids.items = {k: i.id for k, i in items.items()}

    volunteers = {
        username: Volunteer(
            user_id=users[username].id,
            real_name=real_name,
            phone=demo_phone(n),
            skills=list(skills),
            home_unit_id=ids.units[unit],
        )
        for n, (username, (real_name, unit, skills)) in enumerate(VOLUNTEERS.items())
    }
    session.add_all(volunteers.values())
    await session.flush()
    ids.volunteers = {k: v.id for k, v in volunteers.items()}
    # Demo volunteers sign up for every service category (志愿服务意向), so pools are open to them;
    # team categories still give ranking its team-based part.
    await session.execute(
        volunteer_categories.insert(),
        [{"volunteer_id": v, "category_id": c.id} for v in ids.volunteers.values() for c in categories.values()],
    )

    for key, (unit, name, members, codes) in TEAMS.items():
        team = Team(unit_id=ids.units[unit], name=name, leader_volunteer_id=ids.volunteers[members[0]])
        session.add(team)
        await session.flush()
        ids.teams[key] = team.id
        session.add_all(TeamMember(team_id=team.id, volunteer_id=ids.volunteers[m]) for m in members)
        await session.execute(
            team_categories.insert(), [{"team_id": team.id, "category_id": categories[c].id} for c in codes]
        )
    await session.flush()
    return ids


def _admin_for(station: str) -> str:
    """The lowest demo admin whose jurisdiction holds ``station``."""
    key: str | None = station
    while key is not None:
        for username, (unit, _) in ADMINS.items():
            if unit == key:
                return username
        key = UNITS[key][0]
    raise AssertionError(f"no admin above {station}")


# (action, username or "system", body, time since the previous step)
_Step = tuple[Action, str, dict[str, Any], timedelta]
_H = timedelta(hours=1)


def _route(spec: DemoOrder) -> list[_Step]:
    """The actions that take a freshly placed ``spec`` to its status."""
    steps: list[_Step] = []
    unit = spec.station
    if spec.placed_at is not None:
        moved = {"unit_id": spec.station, "reason": spec.transfer_reason}
        steps.append((Action.TRANSFER, _admin_for(spec.placed_at), moved, _H / 2))
    if spec.escalate_reason:
        steps.append((Action.ESCALATE, _admin_for(spec.station), {"reason": spec.escalate_reason}, 3 * _H))
        unit = _need(UNITS[spec.station][0])
    admin = _admin_for(unit)
    orderer = spec.resident or _need(spec.proxy)  # who may cancel (besides the admin) and rate
    rater = _need(spec.proxy) if spec.rated_by_proxy else orderer
    auto = spec.what in ITEMS and ITEMS[spec.what][4]
    target = spec.status
    if target is Status.SUBMITTED:
        return steps
    if target is Status.REJECTED:
        return [*steps, (Action.REJECT, admin, {"reason": spec.reason}, 3 * _H)]
    if target is Status.CANCELLED and not spec.cancel_after_approve:
        who = admin if spec.cancelled_by_admin else orderer
        return [*steps, (Action.CANCEL, who, {"reason": spec.reason}, 5 * _H)]
    if not auto:
        steps.append((Action.APPROVE, admin, {}, 2 * _H))
    if target is Status.CANCELLED:
        return [*steps, (Action.CANCEL, orderer, {"reason": spec.reason}, 20 * _H)]
    if target is Status.APPROVED and not spec.reopen_reason:
        return steps
    if spec.declined_by is not None:
        who, why = spec.declined_by
        steps.append((Action.DISPATCH, admin, _dispatch_to(volunteer=who), _H))
        steps.append((Action.DECLINE, who, {"reason": why}, 3 * _H))
    if spec.via == "pool" or target is Status.POOLED:
        steps.append((Action.PUBLISH, admin, {"accept_within_minutes": 7 * 24 * 60}, _H))
        if target is Status.POOLED:
            return steps
        steps.append((Action.GRAB, _need(spec.volunteer), {}, 2 * _H))
    else:
        if spec.via == "team":
            steps.append((Action.DISPATCH, admin, _dispatch_to(team=spec.team), _H))
        else:
            steps.append((Action.DISPATCH, admin, _dispatch_to(volunteer=spec.volunteer), _H))
        if target is Status.DISPATCHED:
            return steps
        steps.append((Action.ACCEPT, _need(spec.volunteer), {}, 2 * _H))
    if target is Status.ACCEPTED:
        return steps
    volunteer = _need(spec.volunteer)
    lat, lng = UNITS[spec.station][5]
    steps.append((Action.CHECK_IN, volunteer, {"lat": lat, "lng": lng}, 20 * _H))
    if target is Status.IN_SERVICE:
        return steps
    participants = [{"volunteer_id": v, "hours": spec.hours} for v in (volunteer, *spec.helpers)]
    complete = {"summary": spec.summary, "served_count": spec.beneficiaries, "participants": participants}
    # Completed no sooner than the hours served after check-in: longer hours are refused (信用时长).
    steps.append((Action.COMPLETE, volunteer, complete, max(2 * _H, timedelta(hours=float(spec.hours)))))
    if target is Status.COMPLETED:
        return steps
    if target is Status.CLOSED:
        return [*steps, (Action.AUTO_CLOSE, "system", {}, timedelta(days=7))]
    rating = {"stars": spec.stars, "tags": list(spec.tags), "comment": spec.comment}
    steps.append((Action.RATE, rater, rating, 26 * _H))
    if spec.reopen_reason:
        steps.append((Action.REOPEN, admin, {"reason": spec.reopen_reason}, 4 * _H))
    return steps


def _need(username: str | None) -> str:
    assert username is not None, "this demo order is missing a participant"
    return username


def _dispatch_to(*, volunteer: str | None = None, team: str | None = None) -> dict[str, Any]:
    # Resolved to ids when the step runs; accept deadlines leave a demo user days to act.
    return {"volunteer": volunteer, "team": team, "accept_within_minutes": 3 * 24 * 60}


async def _load_orders(maker: async_sessionmaker[AsyncSession], settings: Settings, ids: _Ids) -> None:
    actors: dict[str, Actor] = {"system": SYSTEM_ACTOR}

    async def actor(username: str) -> Actor:
        if username not in actors:
            async with maker() as session:
                actors[username] = await load_actor(session, ids.users[username])
        return actors[username]

    now = datetime.now(UTC)
    for n, spec in enumerate(ORDERS):
        steps = _route(spec)
        # Step times run forward from ``days_ago``, shifted back so the last one is in the past.
        placed_at = now - timedelta(days=spec.days_ago)
        times = [placed_at]
        for *_, gap in steps:
            times.append(times[-1] + gap)
        shift = max(timedelta(0), times[-1] - (now - timedelta(minutes=5)))
        times = [t - shift for t in times]
        placer = await actor(spec.proxy or _need(spec.resident))
        async with maker() as session:
            order = await place_order(session, settings, placer, _order_body(spec, ids, now, n), now=times[0])
        for (action, username, body, _), at in zip(steps, times[1:], strict=True):
            async with maker() as session, session.begin():
                connection, acting = await session.connection(), await actor(username)
                payload = _action_body(action, body, ids)
                if acting is SYSTEM_ACTOR:
                    await apply_as_system(connection, order.id, action, payload, now=at)
                else:
                    caller = Caller(acting.user_id)
                    await apply(connection, order_id=order.id, action=action, caller=caller, body=payload, now=at)
    async with maker() as session, session.begin():
        # The notifications of this made-up past count as delivered back then: a fresh demo should
        # not flood the log (or WeChat) with a hundred stale messages when the worker starts.
        await session.execute(
            text(
                "UPDATE outbox_messages SET status = 'sent', channel = 'log', sent_at = now() WHERE status = 'pending'"
            )
        )
        # Records and ratings take the database clock; date them like the events that wrote them.
        await session.execute(
            text(
                "UPDATE service_records r SET created_at = e.created_at FROM order_events e "
                "WHERE e.action = 'complete' AND (e.payload ->> 'record_id')::bigint = r.id"
            )
        )
        await session.execute(
            text(
                "UPDATE ratings r SET created_at = e.created_at FROM order_events e "
                "WHERE e.action = 'rate' AND e.order_id = r.order_id"
            )
        )


def _order_body(spec: DemoOrder, ids: _Ids, now: datetime, n: int) -> OrderCreate:
    if spec.resident is not None:
        name, _, address = RESIDENTS[spec.resident]
        phone = demo_phone(500 + list(RESIDENTS).index(spec.resident))
    else:
        assert spec.contact is not None, "an order without a resident account needs a contact"
        name, phone = spec.contact
        address = UNITS[spec.station][4]
    lat, lng = UNITS[spec.station][5]
    start: datetime | None = None
    if spec.status in {Status.SUBMITTED, Status.APPROVED, Status.DISPATCHED, Status.POOLED, Status.ACCEPTED}:
        # Still to be served: the resident asks for a slot in the coming days (北京时间).
        day = now.astimezone(BEIJING) + timedelta(days=1 + n % 3)
        start = day.replace(hour=9 if n % 2 else 14, minute=0, second=0, microsecond=0)
    is_item = spec.what in ITEMS
    return OrderCreate(
        item_id=ids.items[spec.what] if is_item else None,
        title=None if is_item else spec.what,
        description=spec.description,
        unit_id=ids.units[spec.placed_at or spec.station],
        address=address,
        contact_name=name,
        contact_phone=phone,
        preferred_start=start,
        preferred_end=start + timedelta(hours=2) if start else None,
        beneficiaries=spec.beneficiaries,
        channel=spec.channel,
        lat=round(lat + (n % 7 - 3) * 0.0011, 6),
        lng=round(lng + (n % 5 - 2) * 0.0013, 6),
        resident_id=ids.users[spec.resident] if spec.resident and spec.proxy else None,
    )


def _action_body(action: Action, body: dict[str, Any], ids: _Ids) -> BaseModel:
    """The action's request model, built from the demo's names (usernames, team keys)."""
    data = dict(body)
    if action is Action.DISPATCH:
        volunteer, team = data.pop("volunteer"), data.pop("team")
        data["volunteer_id"] = ids.volunteers[volunteer] if volunteer else None
        data["team_id"] = ids.teams[team] if team else None
    if action is Action.TRANSFER:
        data["unit_id"] = ids.units[data["unit_id"]]
    if action is Action.COMPLETE:
        data["participants"] = [p | {"volunteer_id": ids.volunteers[p["volunteer_id"]]} for p in data["participants"]]
    return ACTIONS[action].body.model_validate(data)
