"""Files as spreadsheets of each locale write them, for the encoding tests of the store
(``test_encodings.py``) and of the API (``tests/api/test_upload_encodings.py``)."""

from __future__ import annotations

# The file of the report: three lines of German from Excel, Windows-1252. Detected among
# every code page, it was read as the Baltic DOS page cp775 and stored as "K÷ln".
THREE_LINES_CP1252 = "id,name,stadt\r\n1,Köln,Nordrhein-Westfalen\r\n2,München,Bayern\r\n"

# (encoding written, text): one file per encoding spreadsheets write.
SPREADSHEETS = {
    "cp1252 (German)": ("cp1252", "id,name,ort\r\nK-1,Jürgen Müller,Köln\r\n"
                        "K-2,Grete Weiß,München\r\nK-3,Sören Schäfer,Düsseldorf\r\n"),
    "cp1252 (French)": ("cp1252", "id,name,ort\r\n1,François Lefèvre,Orléans\r\n"
                        "2,Hélène Côté,Besançon\r\n3,Jérôme Gérard,Saint-Étienne\r\n"),
    "cp1250 (Polish)": ("cp1250", "id,name,ort\r\n1,Łukasz Wiśniewski,Łódź\r\n"
                        "2,Małgorzata Dąbrowska,Wrocław\r\n3,Paweł Woźniak,Gdańsk\r\n"),
    "cp1250 (Czech)": ("cp1250", "id,name,ort\r\n1,Jiří Dvořák,Plzeň\r\n"
                       "2,Kateřina Černá,České Budějovice\r\n3,Tomáš Růžička,Hradec Králové\r\n"),
    "cp1251 (Russian)": ("cp1251", "id,name,ort\r\n1,Иванов Сергей,Москва\r\n"
                         "2,Фёдорова Ольга,Санкт-Петербург\r\n3,Кузнецов Дмитрий,Новосибирск\r\n"),
    "cp1254 (Turkish)": ("cp1254", "id,name,ort\r\n1,Ayşe Yılmaz,İstanbul\r\n"
                         "2,Mehmet Öztürk,Şanlıurfa\r\n3,Çağlar Doğan,Eskişehir\r\n"),
    "cp1256 (Arabic)": ("cp1256", "id,name,ort\r\n1,محمد العلي,القاهرة\r\n"
                        "2,فاطمة الحسن,الإسكندرية\r\n3,عمر منصور,الرياض\r\n"),
    "shift_jis (Japanese)": ("cp932", "id,name,ort\r\n1,佐藤太郎,東京都千代田区丸の内\r\n"
                             "2,鈴木花子,大阪市北区梅田\r\n3,高橋健一,札幌市中央区\r\n"),
    "gb18030 (Chinese)": ("gb18030", "id,name,ort\r\n1,王伟,北京市朝阳区建国路88号\r\n"
                          "2,李娜,上海市浦东新区世纪大道\r\n3,张敏,广州市天河区体育西路\r\n"),
}
