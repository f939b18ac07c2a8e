"""The vocabulary of the synthetic zh<->en corpus (:mod:`streamst.corpus.grammar`).

Written for this project. Chinese entries are split into words by spaces (``昨天 晚上``);
the grammar joins them without spaces. Each table is ``zh|en...`` lines:

* ``PEOPLE``: person nouns, ``zh|en`` (subjects, relative-clause heads, objects with 个);
* ``THINGS``: ``zh|classifier|singular|plural``;
* ``ADJECTIVES``: one-character adjectives, ``zh|en`` (used before nouns without 的);
* ``VERBS``: transitive verbs, ``zh|past|participle`` (Chinese takes 了 after them);
* ``TIMES``: time adverbials, ``zh|en``;
* ``PLACES``: place nouns, ``zh|preposition|en`` (``在 学校`` -> ``at the school``).
"""

from __future__ import annotations

PRONOUNS = """我|I
你|you
他|he
她|she
我们|we
他们|they"""

PEOPLE = """老师|teacher
医生|doctor
学生|student
司机|driver
工人|worker
农民|farmer
警察|police officer
护士|nurse
厨师|cook
经理|manager
作家|writer
画家|painter
歌手|singer
律师|lawyer
记者|reporter
科学家|scientist
工程师|engineer
商人|merchant
校长|headmaster
邻居|neighbour
朋友|friend
孩子|child
老人|old man
女孩|girl
男孩|boy
客人|guest
服务员|waiter
秘书|secretary
演员|actor
士兵|soldier
渔夫|fisherman
猎人|hunter
邮递员|postman
售货员|shop assistant
哥哥|elder brother
姐姐|elder sister
弟弟|younger brother
妹妹|younger sister
爷爷|grandfather
奶奶|grandmother"""

THINGS = """书|本|book|books
杂志|本|magazine|magazines
词典|本|dictionary|dictionaries
笔|支|pen|pens
铅笔|支|pencil|pencils
桌子|张|table|tables
椅子|把|chair|chairs
床|张|bed|beds
地图|张|map|maps
照片|张|photo|photos
票|张|ticket|tickets
纸|张|sheet of paper|sheets of paper
画|幅|painting|paintings
车|辆|car|cars
自行车|辆|bicycle|bicycles
公共汽车|辆|bus|buses
卡车|辆|truck|trucks
船|条|boat|boats
鱼|条|fish|fish
裤子|条|pair of trousers|pairs of trousers
裙子|条|skirt|skirts
狗|只|dog|dogs
猫|只|cat|cats
鸟|只|bird|birds
鸡|只|chicken|chickens
鸭子|只|duck|ducks
兔子|只|rabbit|rabbits
老虎|只|tiger|tigers
熊猫|只|panda|pandas
羊|只|sheep|sheep
马|匹|horse|horses
牛|头|cow|cows
猪|头|pig|pigs
苹果|个|apple|apples
橘子|个|orange|oranges
香蕉|根|banana|bananas
西瓜|个|watermelon|watermelons
鸡蛋|个|egg|eggs
面包|个|loaf of bread|loaves of bread
蛋糕|块|cake|cakes
手表|块|watch|watches
肥皂|块|bar of soap|bars of soap
石头|块|stone|stones
手机|部|phone|phones
电影|部|film|films
电脑|台|computer|computers
电视|台|television|televisions
冰箱|台|fridge|fridges
相机|台|camera|cameras
杯子|个|cup|cups
碗|个|bowl|bowls
盘子|个|plate|plates
瓶子|个|bottle|bottles
盒子|个|box|boxes
包|个|bag|bags
箱子|个|suitcase|suitcases
钥匙|把|key|keys
刀|把|knife|knives
伞|把|umbrella|umbrellas
勺子|把|spoon|spoons
信|封|letter|letters
衣服|件|piece of clothing|pieces of clothing
衬衫|件|shirt|shirts
外套|件|coat|coats
毛衣|件|sweater|sweaters
礼物|件|gift|gifts
帽子|顶|hat|hats
鞋|双|pair of shoes|pairs of shoes
袜子|双|pair of socks|pairs of socks
筷子|双|pair of chopsticks|pairs of chopsticks
花|朵|flower|flowers
树|棵|tree|trees
草|棵|plant|plants
房子|座|house|houses
桥|座|bridge|bridges
山|座|mountain|mountains
歌|首|song|songs
诗|首|poem|poems
故事|个|story|stories
问题|个|question|questions
办法|个|method|methods
计划|个|plan|plans
报纸|份|newspaper|newspapers
报告|份|report|reports
合同|份|contract|contracts
菜|道|dish|dishes
门|扇|door|doors
窗户|扇|window|windows
灯|盏|lamp|lamps
蜡烛|根|candle|candles
绳子|根|rope|ropes
针|根|needle|needles
钟|座|clock|clocks
镜子|面|mirror|mirrors
旗子|面|flag|flags
墙|面|wall|walls
电池|节|battery|batteries
课|节|lesson|lessons
药|片|pill|pills
叶子|片|leaf|leaves
面条|碗|bowl of noodles|bowls of noodles
米饭|碗|bowl of rice|bowls of rice
汤|碗|bowl of soup|bowls of soup
茶|杯|cup of tea|cups of tea
咖啡|杯|cup of coffee|cups of coffee
牛奶|杯|glass of milk|glasses of milk
水|瓶|bottle of water|bottles of water
啤酒|瓶|bottle of beer|bottles of beer
果汁|瓶|bottle of juice|bottles of juice
电话|个|telephone|telephones
球|个|ball|balls
玩具|个|toy|toys
戒指|枚|ring|rings
硬币|枚|coin|coins
邮票|枚|stamp|stamps
信封|个|envelope|envelopes
毯子|条|blanket|blankets
毛巾|条|towel|towels
围巾|条|scarf|scarves
项链|条|necklace|necklaces
领带|条|tie|ties
河|条|river|rivers
路|条|road|roads
沙发|张|sofa|sofas
海报|张|poster|posters
卡片|张|card|cards
椅垫|个|cushion|cushions
枕头|个|pillow|pillows
篮子|个|basket|baskets
桶|个|bucket|buckets
锅|口|pot|pots
井|口|well|wells
钢琴|架|piano|pianos
飞机|架|plane|planes
梯子|架|ladder|ladders
机器|台|machine|machines
风扇|台|fan|fans
文件|份|document|documents
饺子|个|dumpling|dumplings
包子|个|bun|buns
梨|个|pear|pears
桃子|个|peach|peaches
柠檬|个|lemon|lemons
土豆|个|potato|potatoes
西红柿|个|tomato|tomatoes
葡萄|串|bunch of grapes|bunches of grapes
钥匙扣|个|key ring|key rings
马车|辆|carriage|carriages
火车|列|train|trains
帐篷|顶|tent|tents
鼓|面|drum|drums
吉他|把|guitar|guitars
小提琴|把|violin|violins
尺子|把|ruler|rulers
剪刀|把|pair of scissors|pairs of scissors
锤子|把|hammer|hammers"""

ADJECTIVES = """新|new
旧|old
大|big
小|small
红|red
白|white
黑|black
绿|green
蓝|blue
黄|yellow
长|long
短|short
好|good
坏|broken
贵|expensive
便宜|cheap
干净|clean
脏|dirty
漂亮|beautiful
重|heavy
轻|light
圆|round
方|square
热|hot
冷|cold
甜|sweet
湿|wet
干|dry
厚|thick
薄|thin"""

VERBS = """买|bought|bought
卖|sold|sold
拿|took|taken
送|sent|sent
洗|washed|washed
修|repaired|repaired
画|drew|drawn
找|looked for|looked for
找到|found|found
看见|saw|seen
带|brought|brought
借|borrowed|borrowed
还|returned|returned
丢|lost|lost
放|put down|put down
打开|opened|opened
关上|closed|closed
搬|moved|moved
扔|threw away|thrown away
捡|picked up|picked up
擦|wiped|wiped
藏|hid|hidden
偷|stole|stolen
检查|checked|checked
准备|prepared|prepared
收到|received|received
寄|mailed|mailed
做|made|made
换|changed|changed
推|pushed|pushed
拉|pulled|pulled
抱|carried|carried
接|caught|caught
举|lifted|lifted
挂|hung up|hung up
剪|cut|cut
烧|burned|burned
卷|rolled up|rolled up
摸|touched|touched
称|weighed|weighed
数|counted|counted
记住|remembered|remembered
忘了|forgot|forgotten
选|chose|chosen
点|ordered|ordered
吃|ate|eaten
喝|drank|drunk
尝|tasted|tasted
煮|boiled|boiled
闻|smelled|smelled
拍|photographed|photographed
租|rented|rented
卖掉|sold off|sold off
留下|kept|kept
交|handed in|handed in
翻|turned over|turned over
挑|picked out|picked out
擦亮|polished|polished
弄坏|broke|broken
画好|finished drawing|finished drawing
摆|arranged|arranged
埋|buried|buried
种|planted|planted
锁|locked|locked
量|measured|measured
装|packed|packed
送走|sent away|sent away
叫醒|woke up|woken up
拥抱|hugged|hugged
帮助|helped|helped
认识|met|met
请|invited|invited
等|waited for|waited for
表扬|praised|praised
批评|criticised|criticised
照顾|looked after|looked after
拜访|visited|visited
问|asked|asked
教|taught|taught
救|saved|saved
抓住|caught hold of|caught hold of
叫|called|called
跟踪|followed|followed
打扰|disturbed|disturbed
相信|believed|believed"""

TIMES = """昨天|yesterday
今天|today
前天|the day before yesterday
昨天 晚上|last night
昨天 早上|yesterday morning
昨天 下午|yesterday afternoon
今天 早上|this morning
今天 下午|this afternoon
上 个 星期|last week
上 个 月|last month
去年|last year
前年|the year before last
星期一|on Monday
星期二|on Tuesday
星期三|on Wednesday
星期四|on Thursday
星期五|on Friday
星期六|on Saturday
星期天|on Sunday
上 个 星期一|last Monday
上 个 星期五|last Friday
去年 夏天|last summer
去年 冬天|last winter
去年 春天|last spring
去年 秋天|last autumn
刚才|a moment ago
那 天|that day
那 天 晚上|that night
三 天 前|three days ago
两 个 星期 前|two weeks ago
五 年 前|five years ago
上 个 周末|last weekend
春节|at the Spring Festival
中午|at noon
半夜|at midnight
早上 八 点|at eight in the morning
下午 三 点|at three in the afternoon
晚上 十 点|at ten in the evening"""

PLACES = """学校|at|the school
公园|in|the park
图书馆|in|the library
医院|at|the hospital
商店|in|the shop
超市|in|the supermarket
饭馆|in|the restaurant
银行|at|the bank
邮局|at|the post office
车站|at|the station
机场|at|the airport
办公室|in|the office
教室|in|the classroom
厨房|in|the kitchen
花园|in|the garden
院子|in|the yard
市场|at|the market
博物馆|in|the museum
电影院|at|the cinema
体育馆|in|the gym
宾馆|at|the hotel
工厂|in|the factory
农场|on|the farm
海边|by|the sea
河边|by|the river
湖边|by|the lake
山上|on|the mountain
桥上|on|the bridge
路上|on|the road
楼上|upstairs in|the building
楼下|downstairs in|the building
房间|in|the room
客厅|in|the living room
卧室|in|the bedroom
浴室|in|the bathroom
门口|at|the door
村子|in|the village
城里|in|the city
广场|in|the square
书店|in|the bookshop
咖啡馆|in|the café
操场|on|the playground
仓库|in|the warehouse
码头|at|the harbour
森林|in|the forest
教堂|in|the church
动物园|at|the zoo
实验室|in|the laboratory
会议室|in|the meeting room
火车上|on|the train
船上|on|the boat
飞机上|on|the plane
大学|at|the university
幼儿园|at|the kindergarten
警察局|at|the police station
理发店|at|the barber's
面包店|in|the bakery
药店|at|the pharmacy
加油站|at|the petrol station
停车场|in|the car park"""

NUMERALS = """一|one
两|two
三|three
四|four
五|five
六|six
七|seven
八|eight
九|nine
十|ten"""
