"""Static demo content: people, products, and short exchanges in Japanese and English.

Scripts are lists of ``(direction, text)`` steps, ``"in"`` from the customer, ``"out"`` from the
agent. Placeholders: ``{first}`` (given name, English), ``{family}`` (family name, Japanese),
``{order}``, ``{tracking}``, ``{amount}``, ``{company}``, ``{city}``.
"""

# (display name, family, given, email local part, email domain)
JAPANESE_CUSTOMERS = [
    ("山田 花子", "山田", "花子", "hanako.yamada", "mail.example.jp"),
    ("佐藤 健太", "佐藤", "健太", "kenta.sato", "mail.example.jp"),
    ("鈴木 美咲", "鈴木", "美咲", "misaki.suzuki", "example.com"),
    ("高橋 翔", "高橋", "翔", "sho.takahashi", "net.example.jp"),
    ("田中 陽子", "田中", "陽子", "yoko.tanaka", "mail.example.jp"),
    ("伊藤 大輔", "伊藤", "大輔", "daisuke.ito", "itocafe.example.jp"),
    ("渡辺 さくら", "渡辺", "さくら", "sakura.watanabe", "example.com"),
    ("中村 拓也", "中村", "拓也", "takuya.nakamura", "net.example.jp"),
    ("小林 愛", "小林", "愛", "ai.kobayashi", "mail.example.jp"),
    ("加藤 誠", "加藤", "誠", "makoto.kato", "kato-shoten.example.jp"),
    ("吉田 真由美", "吉田", "真由美", "mayumi.yoshida", "example.com"),
    ("山本 浩二", "山本", "浩二", "koji.yamamoto", "net.example.jp"),
    ("松本 奈々", "松本", "奈々", "nana.matsumoto", "mail.example.jp"),
    ("井上 亮", "井上", "亮", "ryo.inoue", "example.com"),
    ("木村 優子", "木村", "優子", "yuko.kimura", "mail.example.jp"),
    ("林 隆", "林", "隆", "takashi.hayashi", "hayashi-tea.example.jp"),
]

ENGLISH_CUSTOMERS = [
    ("Emily Clark", "Clark", "Emily", "emily.clark", "example.com"),
    ("James Wilson", "Wilson", "James", "james.wilson", "mail.example.org"),
    ("Olivia Brown", "Brown", "Olivia", "olivia.brown", "example.com"),
    ("Michael Johnson", "Johnson", "Michael", "m.johnson", "johnson-imports.example.org"),
    ("Sophie Turner", "Turner", "Sophie", "sophie.turner", "example.com"),
    ("Daniel Evans", "Evans", "Daniel", "dan.evans", "mail.example.org"),
    ("Hannah Lee", "Lee", "Hannah", "hannah.lee", "example.com"),
    ("Thomas Walker", "Walker", "Thomas", "tom.walker", "mail.example.org"),
    ("Grace Mitchell", "Mitchell", "Grace", "grace.mitchell", "example.com"),
    ("Ryan Cooper", "Cooper", "Ryan", "ryan.cooper", "cooper-cafe.example.org"),
    ("Chloe Adams", "Adams", "Chloe", "chloe.adams", "example.com"),
    ("Matthew Scott", "Scott", "Matthew", "matt.scott", "mail.example.org"),
    ("Laura Bennett", "Bennett", "Laura", "laura.bennett", "example.com"),
    ("Kevin O'Brien", "O'Brien", "Kevin", "kevin.obrien", "mail.example.org"),
    ("Natalie Price", "Price", "Natalie", "natalie.price", "example.com"),
    ("Ben Harris", "Harris", "Ben", "ben.harris", "mail.example.org"),
]

# The pair waiting as a merge suggestion: same name, two addresses on one company domain.
MERGE_PAIR_NAME = ("Yuki Sato", "Sato", "Yuki")
MERGE_PAIR_DOMAIN = "acme-trading.co.jp"
MERGE_PAIR_PRIMARY_EMAIL = f"yuki.sato@{MERGE_PAIR_DOMAIN}"
MERGE_PAIR_DUPLICATE_EMAIL = f"y.sato@{MERGE_PAIR_DOMAIN}"

CITIES_JA = ["東京都渋谷区", "大阪市北区", "京都市中京区", "横浜市西区", "札幌市中央区", "福岡市博多区", "名古屋市中区", "神戸市中央区"]
CITIES_EN = ["Tokyo", "Osaka", "Kyoto", "Yokohama", "Sapporo", "Fukuoka", "Nagoya", "Kobe"]
PLANS = ["Free", "Standard", "Premium", "Business"]
TAG_NAMES = ["VIP", "new", "wholesale", "repeat", "at-risk", "newsletter"]
DEVICES = ["iPhone 15 / Safari", "Pixel 8 / Chrome", "Windows 11 / Edge", "macOS / Safari", "iPad / Safari", "Android / app"]
SHOP = "https://shop.example.jp"
PRODUCTS = [
    ("南部鉄器 急須 1.2L (黒)", "Cast-iron teapot 1.2 L (black)", "TP-120-BK", 12800),
    ("有田焼 マグカップ", "Arita porcelain mug", "MG-ARITA", 3200),
    ("宇治抹茶 30g 缶", "Uji matcha tin 30 g", "MT-UJI-30", 2400),
    ("リネン エプロン", "Linen apron", "AP-LINEN", 5400),
    ("竹の茶筅セット", "Bamboo whisk set", "CH-SET", 4100),
    ("ほうじ茶 ティーバッグ 20袋", "Hojicha tea bags (20)", "HJ-TB-20", 980),
]
PAGES = [
    ("/", "Home", "トップページ"),
    ("/collections/teaware", "Teaware collection", "茶器コレクション"),
    ("/pages/shipping", "Shipping & returns", "配送・返品について"),
    ("/pages/wholesale", "Wholesale", "卸売のご案内"),
    ("/account/subscription", "Subscription plans", "定期便プラン"),
    ("/pages/faq", "FAQ", "よくある質問"),
]
APP_EVENTS = ["App opened", "Added to cart", "Push notification opened", "Wishlist updated"]
STORES = ["Shibuya flagship store", "Kyoto Sanjo store", "Umeda pop-up"]

NOTES_JA = [
    "電話よりメール連絡を希望。平日午前は不在がち。",
    "ギフト包装をよく利用される。熨斗の指定あり。",
    "前回の配送遅延でご不満あり。次回は丁寧にフォロー。",
    "カフェ経営。卸の見積もりを検討中。",
]
NOTES_EN = [
    "Prefers email over phone; usually replies in the evening (JST).",
    "Buys gifts for family abroad — mention international shipping options.",
    "Had a delayed delivery last month; be extra careful with follow-up.",
    "Runs a café; evaluating our wholesale terms.",
]

# Topic key -> queue slug, subject and steps per language, and a call summary for voice.
TOPICS = {
    "order_status": {
        "queue": "support",
        "subject": {"en": "Order {order}: shipping status", "ja": "ご注文 {order} の発送状況について"},
        "summary": {
            "en": "Caller asked where order {order} is. Shipped today, tracking {tracking} given.",
            "ja": "注文 {order} の配送状況の問い合わせ。本日発送済み、追跡番号 {tracking} を案内。",
        },
        "en": [
            ("in", "Hi, I ordered last week (order {order}) and haven't had a shipping notice yet. Any update?"),
            ("out", "Hi {first}, thanks for reaching out! Order {order} shipped this morning, tracking number {tracking}. It should arrive within 2 days."),
            ("in", "Great, thank you!"),
            ("out", "You're welcome. Have a lovely day!"),
        ],
        "ja": [
            ("in", "先週注文した商品（注文番号 {order}）の発送連絡がまだ届いていません。状況を教えていただけますか？"),
            ("out", "{family}様、お問い合わせありがとうございます。ご注文 {order} は本日午前に発送いたしました。追跡番号は {tracking} です。2日以内に到着予定です。"),
            ("in", "ありがとうございます、安心しました。"),
            ("out", "どういたしまして。またいつでもご連絡ください。"),
        ],
    },
    "damaged": {
        "queue": "support",
        "subject": {"en": "Damaged item in order {order}", "ja": "注文 {order} の商品破損について"},
        "summary": {
            "en": "Mug from order {order} arrived chipped. Replacement shipped free, no return needed.",
            "ja": "注文 {order} のマグカップ破損。交換品を無料発送、返送不要と案内。",
        },
        "en": [
            ("in", "The mug in my order {order} arrived with a chip on the rim. Can you help?"),
            ("out", "I'm so sorry to hear that, {first}. Could you send a photo of the damage? We'll ship a replacement right away."),
            ("in", "Sure, I've just sent a photo."),
            ("out", "Thank you. A replacement is on its way at no cost, and there's no need to return the damaged one."),
        ],
        "ja": [
            ("in", "注文 {order} のマグカップが欠けた状態で届きました。"),
            ("out", "{family}様、大変申し訳ございません。お手数ですが破損箇所のお写真をお送りいただけますか？すぐに交換品を手配いたします。"),
            ("in", "写真を送りました。"),
            ("out", "ありがとうございます。交換品を無料でお送りします。破損品のご返送は不要です。"),
        ],
    },
    "double_charge": {
        "queue": "billing",
        "subject": {"en": "Charged twice for order {order}?", "ja": "注文 {order} の二重請求について"},
        "summary": {
            "en": "Thought they were charged twice (¥{amount}). Second one is a pending authorization; asked payments to release it.",
            "ja": "二重請求（¥{amount}）の問い合わせ。2件目は仮売上のため自動取消と説明、決済チームに早期取消を依頼。",
        },
        "en": [
            ("in", "I think I was charged twice for order {order}. I see two charges of ¥{amount} on my card."),
            ("out", "Thanks for flagging this, {first}. The second charge is a pending authorization that will drop off within 3 to 5 business days. I've asked our payments team to release it sooner."),
            ("in", "OK, thanks for checking."),
            ("out", "Anytime! I'll follow up if anything changes."),
        ],
        "ja": [
            ("in", "注文 {order} で同じ金額（¥{amount}）が2回請求されているようです。"),
            ("out", "{family}様、ご連絡ありがとうございます。2件目は仮売上で、3〜5営業日以内に自動的に取り消されます。早めの取り消しも決済チームに依頼しました。"),
            ("in", "わかりました。確認ありがとうございます。"),
            ("out", "とんでもございません。何か変化があればご連絡いたします。"),
        ],
    },
    "invoice": {
        "queue": "billing",
        "subject": {"en": "Receipt for order {order}", "ja": "注文 {order} の領収書発行のお願い"},
        "summary": {
            "en": "Needs a receipt addressed to {company} for order {order}. Sent by email.",
            "ja": "注文 {order} の領収書を「{company}」宛で発行希望。メールで送付済み。",
        },
        "en": [
            ("in", "Could you send me a receipt with our company name for order {order}? We need it for expenses."),
            ("out", "Of course! What company name should appear on the receipt?"),
            ("in", "{company}, please."),
            ("out", "Done, the receipt has been sent to your email address. Let me know if you need anything else."),
        ],
        "ja": [
            ("in", "注文 {order} の領収書を会社名宛てで発行していただけますか？"),
            ("out", "{family}様、承知いたしました。宛名はどのようにいたしましょうか？"),
            ("in", "「{company}」でお願いします。"),
            ("out", "領収書をメールでお送りしました。ご確認ください。"),
        ],
    },
    "product_question": {
        "queue": "sales",
        "subject": {"en": "Question about the cast-iron teapot", "ja": "南部鉄器の急須について"},
        "summary": {
            "en": "Asked about the black 1.2 L teapot: in stock, induction-compatible. Reserved one until tomorrow noon.",
            "ja": "南部鉄器急須（黒・1.2L）の在庫とIH対応の確認。明日正午まで取り置き。",
        },
        "en": [
            ("in", "Is the cast-iron teapot (1.2 L) in stock in black? And does it work on induction?"),
            ("out", "Hi {first}! Yes, the black 1.2 L teapot is in stock, and it works on induction. Would you like me to reserve one for you?"),
            ("in", "Yes please, I'll order tonight."),
            ("out", "Reserved until tomorrow noon. Enjoy!"),
        ],
        "ja": [
            ("in", "南部鉄器の急須（1.2L）の黒は在庫ありますか？IHでも使えますか？"),
            ("out", "{family}様、お問い合わせありがとうございます。黒の1.2Lは在庫がございます。IHにも対応しております。お取り置きいたしましょうか？"),
            ("in", "お願いします。今夜注文します。"),
            ("out", "明日正午までお取り置きいたしました。"),
        ],
    },
    "wholesale": {
        "queue": "sales",
        "subject": {"en": "Wholesale pricing for matcha", "ja": "抹茶の卸価格について"},
        "summary": {
            "en": "Café owner in {city} interested in wholesale matcha. MOQ 20 tins, 25% off. Catalogue to follow by email.",
            "ja": "{city}のカフェ経営者。抹茶の卸に関心。最小20缶・定価25%引きを案内、カタログをメール送付予定。",
        },
        "en": [
            ("in", "We run a café in {city} and are interested in wholesale pricing for your matcha. What's the minimum order?"),
            ("out", "Thanks for your interest, {first}! Wholesale starts at 20 tins per order, at 25% off list price. I'll email you our wholesale catalogue."),
            ("in", "Perfect, looking forward to it."),
            ("out", "Catalogue sent. I've also added you to our wholesale mailing list."),
        ],
        "ja": [
            ("in", "{city}でカフェを経営しています。抹茶の卸価格と最小ロットを教えてください。"),
            ("out", "{family}様、お問い合わせありがとうございます。卸は1回20缶からで、定価の25%引きとなります。卸カタログをメールでお送りします。"),
            ("in", "ありがとうございます。楽しみにしています。"),
            ("out", "カタログを送付いたしました。ご検討よろしくお願いいたします。"),
        ],
    },
    "return": {
        "queue": "support",
        "subject": {"en": "Return for order {order}", "ja": "注文 {order} の返品について"},
        "summary": {
            "en": "Wants to return the apron from order {order} (too small). Return label emailed, refund within 5 days.",
            "ja": "注文 {order} のエプロン返品希望（サイズ違い）。返品伝票をメール送付、到着後5日以内に返金。",
        },
        "en": [
            ("in", "I'd like to return the linen apron from order {order}. It's too small."),
            ("out", "No problem, {first}. I've emailed you a free return label. Once we receive the apron, we'll refund you within 5 days."),
            ("in", "Got it, thanks."),
        ],
        "ja": [
            ("in", "注文 {order} のエプロンのサイズが合わなかったので返品したいです。"),
            ("out", "{family}様、承知いたしました。返品用の伝票をメールでお送りしました。到着後5日以内に返金いたします。"),
            ("in", "了解しました。ありがとうございます。"),
        ],
    },
    "account": {
        "queue": "support",
        "subject": {"en": "Can't log in", "ja": "ログインできません"},
        "summary": {
            "en": "Password reset email not arriving. Re-sent the link; it was in the spam folder.",
            "ja": "パスワード再設定メールが届かない。リンク再送、迷惑メールフォルダに入っていた。",
        },
        "en": [
            ("in", "I can't log in to my account, the password reset email never arrives."),
            ("out", "Sorry about that, {first}. I've re-sent the reset link; please also check your spam folder. It's valid for 30 minutes."),
            ("in", "Found it in spam, I'm in now. Thanks!"),
            ("out", "Glad to hear it!"),
        ],
        "ja": [
            ("in", "パスワード再設定のメールが届かず、ログインできません。"),
            ("out", "{family}様、ご不便をおかけしております。再設定リンクを再送いたしました。迷惑メールフォルダもご確認ください（有効期限30分）。"),
            ("in", "迷惑メールに入っていました。ログインできました！"),
            ("out", "よかったです。またいつでもご連絡ください。"),
        ],
    },
    "plan_change": {
        "queue": "billing",
        "subject": {"en": "Upgrading my subscription", "ja": "定期便プランの変更"},
        "summary": {
            "en": "Upgrade Standard → Premium. Prorated difference ¥{amount} charged today, plan switched.",
            "ja": "スタンダードからプレミアムへ変更。差額 ¥{amount} を本日請求、プラン変更済み。",
        },
        "en": [
            ("in", "I'd like to upgrade my subscription from Standard to Premium. Will I be charged the full amount today?"),
            ("out", "Great choice, {first}! You'll only pay the prorated difference (¥{amount}) today. I've switched your plan and it's active now."),
            ("in", "Thank you!"),
        ],
        "ja": [
            ("in", "定期便をスタンダードからプレミアムに変更したいです。今日全額請求されますか？"),
            ("out", "{family}様、ありがとうございます。本日は差額（¥{amount}）のみのご請求です。プランを変更いたしました。"),
            ("in", "ありがとうございます！"),
        ],
    },
}

CALL_TEXT = {"en": "Inbound call · {minutes}m{seconds:02d}s", "ja": "着信通話 · {minutes}分{seconds:02d}秒"}
CALL_NOTE_PREFIX = {"en": "Call summary: ", "ja": "通話メモ: "}
VIP_NOTE = {"en": "VIP customer: offer free express shipping.", "ja": "VIPのお客様。速達送料無料で対応。"}
FAILED_SMS_NOTE = {
    "en": "SMS to this number failed (30003, handset unreachable). Followed up by email.",
    "ja": "SMSが届かず（30003：端末に到達不可）。メールでフォロー済み。",
}

# Wrap-up codes (admin → Wrap-up codes): why a conversation ended.
WRAP_UP_CODES = [  # code, label (English), label in Japanese
    ("order-status", "Order status", "注文状況"),
    ("delivery-issue", "Delivery issue", "配送トラブル"),
    ("return-refund", "Return or refund", "返品・返金"),
    ("billing", "Billing", "請求"),
    ("product-question", "Product question", "商品の質問"),
    ("account", "Account", "アカウント"),
    ("no-action", "No action needed", "対応不要"),
]

# Canned responses (admin → Canned responses), typed as /shortcode in the composer.
CANNED_RESPONSES = [
    ("hello", "Greeting", "en", "Hi {customer_first_name}, this is {agent_name} from Sakura Tea. How can I help?"),
    ("thanks", "Thanks for waiting", "en", "Thank you for your patience, {customer_first_name}. I'm looking into it now."),
    ("tracking", "Tracking number", "en",
     "Your order has shipped. You can follow it here: https://shop.example.jp/orders (tracking number in the confirmation email)."),
    ("bye", "Closing", "en", "Is there anything else I can help with? Have a lovely day, {customer_first_name}!"),
    ("aisatsu", "ご挨拶", "ja", "{customer_name}様、お問い合わせありがとうございます。担当の{agent_name}です。"),
    ("omachi", "お待たせ", "ja", "{customer_name}様、お待たせいたしました。ただいま確認いたします。"),
    ("hassou", "発送のご案内", "ja", "ご注文の商品は発送済みです。追跡番号は発送完了メールに記載しております。"),
    ("shime", "締めのご挨拶", "ja", "他にご不明な点はございますか。今後ともよろしくお願いいたします。"),
]
