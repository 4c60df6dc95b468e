"""Encoding detection: how often the file store reads a legacy-encoded spreadsheet right.

    python bench/encoding_bench.py [--files 40] [--seed 7] [--verbose]

Generates CSV files the way spreadsheets in each locale write them (Excel's "CSV" in the
system's ANSI code page, ``;`` between fields where the decimal separator is a comma, CRLF
line ends; "Unicode Text" as UTF-16 with a byte-order mark and tabs), from names, streets,
cities and remarks written for each language, at three sizes: about 100 bytes (a header
and a row or two of a few columns), 10 KB and 1 MB. Each file is fed, a block at a time,
to the same :class:`~longtask.textencoding.EncodingSniffer` the store uses, and the
outcome is counted per encoding and size:

- **right**: the encoding chosen decodes the file to exactly the text written (a code page
  that decodes it identically counts as right: cp1250 reads German as cp1252 does);
- **refused**: not sure enough (below the confidence threshold), so the upload is refused
  with how to save as "CSV UTF-8" or name the encoding;
- **wrong**: an encoding was chosen that garbles the text (the failure this guards against).

The reference, measured on the same files, is what the store did before:
``charset_normalizer.from_bytes(first MiB).best()`` with no restriction (it never refuses;
"right" and "wrong" only). Files whose generated text is pure ASCII are made again with the
next seed (they are valid UTF-8 and never reach detection). No server is needed.
"""

from __future__ import annotations

import argparse
import codecs
import csv
import io
import random
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import charset_normalizer

from longtask.textencoding import EncodingSniffer, EncodingUncertain

SIZES = {"100 B": 100, "10 KB": 10_000, "1 MB": 1_000_000}
BLOCK = 1 << 20


@dataclass(frozen=True)
class Locale:
    """How a spreadsheet of one language is written: its code page, separator, contents."""

    code: str
    encoding: str
    delimiter: str
    header: list[str]
    first: list[str]
    last: list[str]
    streets: list[str]
    cities: list[str]
    remarks: list[str]
    currency: str
    date: str  # strftime-like order: "dmy." "dmy/" "ymd-" "ymd/" "ymd."


def _w(text: str) -> list[str]:
    return [w.strip() for w in text.split("|")]


LOCALES = [
    Locale(
        "de", "cp1252", ";",
        _w("Kundennr|Vorname|Nachname|Straße|PLZ|Ort|Telefon|Geburtsdatum|Betrag|Bemerkung"),
        _w("Jürgen|Björn|Sören|Jörg|Günter|Käthe|Hans|Peter|Anna|Lena|Maximilian|Sophie|Lukas|"
           "Mia|Jonas|Hannah|Felix|Bärbel|Ute|Uwe|Dieter|Renate|Ursula|Thomas|Stefan|Sabine"),
        _w("Müller|Schröder|Weiß|Köhler|Bäcker|Löffler|Jäger|Krämer|Schäfer|Schmidt|Fischer|"
           "Wagner|Becker|Hoffmann|Schulz|Koch|Richter|Klein|Wolf|Neumann|Schwarz|Zimmermann|"
           "Braun|Krüger|Hartmann|Lange|Werner|Krause|Meier|Lehmann|Günther|Groß|Böhm|Fuß"),
        _w("Hauptstraße|Schloßallee|Bahnhofstraße|Mühlenweg|Königstraße|Lindenstraße|"
           "Gartenstraße|Am Mühlbach|Rosenstraße|Bergstraße|Kirchplatz|Goethestraße|"
           "Schillerstraße|Marktplatz|Brückenstraße|Südring|Grüner Weg"),
        _w("Köln|München|Düsseldorf|Nürnberg|Lübeck|Würzburg|Görlitz|Saarbrücken|Osnabrück|"
           "Fürth|Gießen|Mönchengladbach|Göttingen|Tübingen|Jülich|Böblingen|Lüneburg|Berlin|"
           "Hamburg|Frankfurt am Main|Stuttgart|Dresden|Leipzig|Bremen|Hannover"),
        _w("Rückruf erbeten|Lieferung nächste Woche|Zahlung überfällig|bitte nicht vor 10 Uhr "
           "anrufen|Adresse geändert|Kunde seit 2019|Rabatt 5 % gewährt|Ware beschädigt, Ersatz "
           "geschickt|||Termin am Dienstag|Größe L statt M|Schlüssel beim Nachbarn|"
           "Öffnungszeiten beachten"),
        "€", "dmy.",
    ),
    Locale(
        "fr", "cp1252", ";",
        _w("Numéro|Prénom|Nom|Adresse|Code postal|Ville|Téléphone|Date de naissance|Montant|"
           "Remarque"),
        _w("François|Hélène|Jérôme|Cécile|Benoît|Gaëlle|Maëlys|Noémie|Loïc|Chloé|Léa|Théo|"
           "Clément|Agnès|Solène|Anaïs|Raphaël|Inès|Jean|Marie|Pierre|Camille|Lucas|Emma|Hugo|"
           "Élodie|Émilie|Céline"),
        _w("Lefèvre|Gérard|Bézier|Côté|Mérieux|Martin|Bernard|Dubois|Thomas|Robert|Richard|"
           "Petit|Durand|Leroy|Moreau|Simon|Laurent|Michel|Garcia|David|Bertrand|Roux|Vincent|"
           "Fournier|Morel|Girard|André|Mercier|Dupont|Lambert|Bonnet|Légaré|Bélanger|Lemaître"),
        _w("rue de la République|place de l'Église|avenue du Général-de-Gaulle|chemin des Prés|"
           "boulevard Émile-Zola|rue Gambetta|allée des Châtaigniers|impasse du Moulin|"
           "rue du Château|quai de la Fosse|rue Pasteur|route de Nîmes"),
        _w("Orléans|Besançon|Nîmes|Béziers|Angoulême|Évry|Sète|Saint-Étienne|Montbéliard|Paris|"
           "Lyon|Marseille|Toulouse|Nice|Nantes|Strasbourg|Montpellier|Bordeaux|Lille|Rennes|"
           "Reims|Le Havre|Grenoble|Dijon|Angers|Clermont-Ferrand|Brest|Périgueux|Sélestat"),
        _w("à rappeler|livraison prévue la semaine prochaine|paiement en retard|client fidèle|"
           "adresse modifiée|ne pas appeler avant 10 h|remise de 5 % accordée|colis endommagé, "
           "renvoyé|rendez-vous mardi|||créneau préféré : après-midi|très satisfait|"
           "déménagement prévu|œuvre livrée"),
        "€", "dmy/",
    ),
    Locale(
        "es", "cp1252", ";",
        _w("Número|Nombre|Apellidos|Dirección|Código postal|Ciudad|Teléfono|Fecha de nacimiento|"
           "Importe|Observaciones"),
        _w("José|María|Begoña|Íñigo|Sofía|Jesús|Ramón|Lucía|Martín|Álvaro|Andrés|Inés|Raúl|"
           "Mónica|Óscar|Adrián|Nuria|Pilar|Carmen|Javier|Ángel|Elena|Sergio|Patricia"),
        _w("Muñoz|Núñez|Peña|Ibáñez|Gómez|López|Martínez|Rodríguez|Díaz|García|Fernández|"
           "González|Sánchez|Pérez|Jiménez|Ruiz|Hernández|Álvarez|Moreno|Romero|Alonso|Gutiérrez|"
           "Navarro|Torres|Domínguez|Vázquez|Ramos|Gil|Ramírez|Serrano|Blanco|Suárez|Molina|"
           "Castro|Ortega|Rubio|Marín|Sanz|Iglesias|Medina|Garrido|Cortés|Castillo"),
        _w("calle Mayor|avenida de la Constitución|plaza de España|calle de Alcalá|paseo de la "
           "Castellana|calle Real|avenida Andalucía|calle San Martín|ronda de Toledo|calle Nueva|"
           "camino del Río"),
        _w("Córdoba|Málaga|León|Cádiz|Logroño|A Coruña|Ávila|Jaén|Almería|Cáceres|Madrid|"
           "Barcelona|Valencia|Sevilla|Zaragoza|Murcia|Palma|Bilbao|Alicante|Valladolid|Vigo|"
           "Gijón|Granada|Vitoria|Elche|Oviedo|Badajoz|Salamanca|Castellón"),
        _w("llamar por la tarde|envío la próxima semana|pago pendiente|cliente desde 2018|"
           "dirección cambiada|descuento del 5 % aplicado|paquete dañado, reenviado|cita el "
           "martes|||¿confirmar teléfono?|¡urgente!|muy satisfecho"),
        "€", "dmy/",
    ),
    Locale(
        "pt", "cp1252", ";",
        _w("Número|Nome|Apelido|Morada|Código postal|Localidade|Telefone|Data de nascimento|"
           "Montante|Observações"),
        _w("João|Conceição|Gonçalo|Inês|Sebastião|Luís|José|Maria|António|Ana|Manuel|Francisca|"
           "Tomás|Beatriz|Rodrigo|Leonor|Simão|Márcia|Vitória|Débora|Rúben|Vânia|Fábio|Tânia"),
        _w("Gonçalves|Magalhães|Simões|Araújo|Silva|Santos|Ferreira|Pereira|Oliveira|Costa|"
           "Rodrigues|Martins|Jesus|Sousa|Fernandes|Lopes|Marques|Alves|Almeida|Ribeiro|Pinto|"
           "Carvalho|Teixeira|Moreira|Correia|Mendes|Nunes|Soares|Vieira|Monteiro|Cardoso|"
           "Rocha|Neves|Coelho|Cruz|Cunha|Pires|Reis|Antunes|Matos|Brandão|Guimarães|Assunção"),
        _w("Rua da Liberdade|Avenida da República|Praça do Comércio|Rua de São Bento|Travessa do "
           "Poço|Largo da Sé|Rua Direita|Estrada Nacional 1|Rua do Açúcar|Avenida João XXI"),
        _w("Lisboa|Évora|Setúbal|Guimarães|Viseu|Funchal|Amadora|Póvoa de Varzim|São João da "
           "Madeira|Porto|Braga|Coimbra|Faro|Aveiro|Leiria|Santarém|Beja|Bragança|Castelo Branco|"
           "Portalegre|Viana do Castelo|Vila Real|Covilhã|Olhão|Ponta Delgada"),
        _w("ligar à tarde|entrega na próxima semana|pagamento em atraso|cliente desde 2017|"
           "morada alterada|desconto de 5 % concedido|encomenda danificada|reunião na "
           "terça-feira|||não atende|situação resolvida"),
        "€", "dmy/",
    ),
    Locale(
        "it", "cp1252", ";",
        _w("Codice|Nome|Cognome|Indirizzo|CAP|Città|Telefono|Data di nascita|Importo|Note"),
        _w("Niccolò|Nicolò|Mattia|Giulia|Francesco|Chiara|Lorenzo|Sofia|Andrea|Martina|"
           "Alessandro|Aurora|Gabriele|Ginevra|Tommaso|Beatrice|Leonardo|Alice|Riccardo|Noemi|"
           "Elia|Cristina|Pietro|Federica"),
        _w("Rossi|Russo|Ferrari|Esposito|Bianchi|Romano|Colombo|Ricci|Marino|Greco|Bruno|Gallo|"
           "Conti|De Luca|Mancini|Costa|Giordano|Rizzo|Lombardi|Moretti|Barbieri|Fontana|"
           "Santoro|Mariani|Rinaldi|Caruso|Ferrara|Galli|Martini|Leone|Longo|Gentile|D'Angelo|"
           "Parisi|Villa|Conte|Fabbri|Marini|Grasso|Valentini|Sala|De Angelis"),
        _w("via Roma|via Garibaldi|corso Vittorio Emanuele II|piazza del Duomo|via Mazzini|"
           "viale della Libertà|via Cavour|via dei Mille|largo Santa Lucia|via Università"),
        _w("Forlì|Cantù|Città di Castello|Roma|Milano|Napoli|Torino|Palermo|Genova|Bologna|"
           "Firenze|Bari|Catania|Venezia|Verona|Padova|Trieste|Brescia|Parma|Modena|Perugia|"
           "Ravenna|Livorno|Cagliari|Rimini|Salerno|Sassari|Pescara|Bergamo|Trento|Vicenza"),
        _w("richiamare nel pomeriggio|consegna la settimana prossima|pagamento in ritardo|"
           "cliente dal 2016|indirizzo cambiato|sconto del 5 % già applicato|perché non "
           "risponde?|più tardi|è urgente|||città da verificare|attività chiusa il lunedì"),
        "€", "dmy/",
    ),
    Locale(
        "nl", "cp1252", ";",
        _w("Klantnummer|Voornaam|Achternaam|Adres|Postcode|Plaats|Telefoon|Geboortedatum|"
           "Bedrag|Opmerking"),
        _w("Sjoerd|Maaike|Anouk|Joëlle|Daniëlle|Noël|Chloë|Thijs|Daan|Sem|Lieke|Femke|Ruud|"
           "Bram|Jeroen|Eva|Isa|Jesse|Ilse|René|André|Zoë"),
        _w("de Jong|Jansen|de Vries|van den Berg|van Dijk|Bakker|Janssen|Visser|Smit|Meijer|"
           "de Boer|Mulder|de Groot|Bos|Vos|Peters|Hendriks|van Leeuwen|Dekker|Brouwer|de Wit|"
           "Dijkstra|Smits|de Graaf|van der Meer|Kok|Jacobs|de Haan|Vermeulen|Maes|Wouters"),
        _w("Kerkstraat|Dorpsstraat|Molenweg|Stationsweg|Schoolstraat|Julianalaan|Beatrixstraat|"
           "Kerkplein|Parallelweg|Sint-Pietersnieuwstraat|Koningin Wilhelminalaan"),
        _w("Amsterdam|Rotterdam|Den Haag|Utrecht|Eindhoven|Groningen|Tilburg|Almere|Breda|"
           "Nijmegen|Apeldoorn|Haarlem|Arnhem|Enschede|Amersfoort|'s-Hertogenbosch|Zwolle|"
           "Leiden|Maastricht|Dordrecht|Gent|Brussel|Antwerpen|Leuven|Brugge|Liège"),
        _w("terugbellen na de lunch|levering volgende week|betaling te laat|klant sinds 2015|"
           "adres gewijzigd|5 % korting gegeven|pakket beschadigd|afspraak op dinsdag|||"
           "één keer herinnerd|coöperatie lid|patiënt is verhuisd|reünie gepland|café gesloten"),
        "€", "dmy-",
    ),
    Locale(
        "sv", "cp1252", ";",
        _w("Kundnummer|Förnamn|Efternamn|Adress|Postnummer|Ort|Telefon|Födelsedatum|Belopp|"
           "Kommentar"),
        _w("Åsa|Björn|Göran|Märta|Sören|Lars|Anna|Karl|Eva|Per|Maria|Erik|Ingrid|Åke|Örjan|"
           "Linnéa|Mårten|Håkan|Kjell|Malin|Elin|Stig|Jörgen|Birgitta"),
        _w("Andersson|Johansson|Karlsson|Nilsson|Eriksson|Larsson|Olsson|Persson|Svensson|"
           "Gustafsson|Pettersson|Jönsson|Lindberg|Lindström|Lindqvist|Bergström|Sjöberg|"
           "Engström|Håkansson|Björk|Nyström|Löfgren|Söderberg|Mårtensson|Åberg|Öberg|Månsson|"
           "Åkesson|Sjögren|Ström"),
        _w("Storgatan|Kungsgatan|Drottninggatan|Skolgatan|Järnvägsgatan|Kyrkogatan|Ringvägen|"
           "Östra Långgatan|Västra Hamngatan|Södra Förstadsgatan|Åsgatan"),
        _w("Göteborg|Malmö|Västerås|Jönköping|Örebro|Umeå|Linköping|Norrköping|Uppsala|"
           "Helsingborg|Lund|Borås|Södertälje|Eskilstuna|Gävle|Växjö|Halmstad|Sundsvall|Luleå|"
           "Trollhättan|Östersund|Borlänge|Falun|Skövde|Karlstad|Kalmar|Stockholm"),
        _w("ring tillbaka efter lunch|leverans nästa vecka|betalning försenad|kund sedan 2014|"
           "adress ändrad|5 % rabatt beviljad|paketet skadat|möte på tisdag|||kontakta på "
           "förmiddagen|nöjd kund|flyttar till Gävle"),
        "kr", "ymd-",
    ),
    Locale(
        "da", "cp1252", ";",
        _w("Kundenr|Fornavn|Efternavn|Adresse|Postnr|By|Telefon|Fødselsdato|Beløb|Bemærkning"),
        _w("Søren|Jørgen|Bjørn|Kirsten|Mette|Lars|Anne|Jens|Hanne|Niels|Ole|Rasmus|Mads|Ida|"
           "Freja|Sofie|Asger|Åse|Øystein|Ragnhild|Sønnøve"),
        _w("Jensen|Nielsen|Hansen|Pedersen|Andersen|Christensen|Larsen|Sørensen|Rasmussen|"
           "Jørgensen|Petersen|Madsen|Kristensen|Olsen|Thomsen|Poulsen|Møller|Mortensen|"
           "Knudsen|Østergaard|Vestergaard|Kjær|Nørgaard|Søndergaard|Brøndum|Bøgh|Ødegård|"
           "Strøm|Haugen|Bakken"),
        _w("Østergade|Vestergade|Nørregade|Søndergade|Algade|Kongensgade|Skolevej|Møllevej|"
           "Strandvejen|Bøgevej|Kirkegårdsvej|Åboulevarden"),
        _w("København|Århus|Aalborg|Odense|Esbjerg|Randers|Kolding|Horsens|Vejle|Roskilde|"
           "Herning|Hørsholm|Helsingør|Silkeborg|Næstved|Fredericia|Viborg|Køge|Holstebro|"
           "Slagelse|Hillerød|Sønderborg|Svendborg|Hjørring|Ærøskøbing|Tromsø|Bodø|Ålesund|"
           "Bærum|Tønsberg|Førde"),
        _w("ring tilbage efter frokost|levering næste uge|betaling forsinket|kunde siden 2013|"
           "adresse ændret|5 % rabat givet|pakken er beskadiget|møde på tirsdag|||tilfreds "
           "kunde|kontakt før kl. 12|flytter til Køge"),
        "kr.", "dmy-",
    ),
    Locale(
        "pl", "cp1250", ";",
        _w("Lp.|Imię|Nazwisko|Ulica|Kod pocztowy|Miejscowość|Telefon|Data urodzenia|Kwota|"
           "Uwagi"),
        _w("Łukasz|Paweł|Michał|Wojciech|Małgorzata|Agnieszka|Józef|Krzysztof|Grzegorz|Anna|"
           "Katarzyna|Tomasz|Piotr|Jan|Andrzej|Marek|Zofia|Jadwiga|Bożena|Halina|Elżbieta|"
           "Stanisław|Jarosław|Mirosław|Zbigniew|Jerzy|Dorota|Ewa|Barbara|Kamil|Mateusz|"
           "Bartłomiej|Przemysław|Sławomir|Wiesław|Gabriela|Iwona|Joanna"),
        _w("Nowak|Kowalski|Wiśniewski|Wójcik|Kowalczyk|Kamiński|Lewandowski|Zieliński|"
           "Szymański|Woźniak|Dąbrowski|Kozłowski|Jankowski|Mazur|Wojciechowski|Kwiatkowski|"
           "Krawczyk|Kaczmarek|Piotrowski|Grabowski|Zając|Pawłowski|Michalski|Król|Wieczorek|"
           "Jabłoński|Wróbel|Majewski|Olszewski|Stępień|Malinowski|Jaworski|Adamczyk|Dudek|"
           "Górski|Walczak|Sikora|Bąk|Włodarczyk|Sokołowski|Kołodziej|Głowacki|Żak|Leśniak"),
        _w("ul. Piłsudskiego|ul. Kościuszki|ul. Mickiewicza|ul. Żeromskiego|ul. Słowackiego|"
           "ul. Świętokrzyska|Aleje Jerozolimskie|ul. Długa|ul. Polna|ul. Leśna|ul. Słoneczna|"
           "ul. Krótka|ul. Szkolna|ul. Ogrodowa|ul. Lipowa|ul. Łąkowa|ul. Kwiatowa|"
           "ul. Kościelna|ul. Źródlana|Rynek Główny|ul. Grunwaldzka"),
        _w("Łódź|Kraków|Wrocław|Poznań|Gdańsk|Szczecin|Białystok|Częstochowa|Rzeszów|Toruń|"
           "Kielce|Gliwice|Zabrze|Bielsko-Biała|Zielona Góra|Warszawa|Bydgoszcz|Lublin|"
           "Katowice|Gdynia|Radom|Sosnowiec|Olsztyn|Bytom|Rybnik|Tychy|Opole|Elbląg|Płock|"
           "Wałbrzych|Gorzów Wielkopolski|Włocławek|Tarnów|Chorzów|Koszalin|Kalisz|Legnica|"
           "Grudziądz|Słupsk|Nowy Sącz|Jelenia Góra|Piotrków Trybunalski|Świdnica|Zamość"),
        _w("oddzwonić po południu|dostawa w przyszłym tygodniu|płatność zaległa|klient od 2012 "
           "roku|zmiana adresu|udzielono 5 % rabatu|paczka uszkodzona|spotkanie we wtorek|||"
           "proszę dzwonić przed 12|zadowolony klient|przeprowadzka do Łodzi|brak odpowiedzi|"
           "wysłano ponownie"),
        "zł", "dmy.",
    ),
    Locale(
        "cs", "cp1250", ";",
        _w("Číslo|Jméno|Příjmení|Ulice|PSČ|Obec|Telefon|Datum narození|Částka|Poznámka"),
        _w("Jiří|Petr|Tomáš|Lukáš|Jan|Zdeněk|Kateřina|Lucie|Markéta|Veronika|Josef|Pavel|"
           "Martin|Jaroslav|Miroslav|František|Václav|Michal|Jana|Eva|Hana|Lenka|Věra|Alena|"
           "Ondřej|Radek|Jitka|Šárka|Dagmar|Přemysl|Luboš|Matěj|Vojtěch|Štěpán|Kryštof|Tereza"),
        _w("Novák|Svoboda|Novotný|Dvořák|Černý|Procházka|Kučera|Veselý|Horák|Němec|Pokorný|"
           "Marek|Pospíšil|Hájek|Jelínek|Král|Růžička|Beneš|Fiala|Sedláček|Doležal|Zeman|Kolář|"
           "Navrátil|Čermák|Vaněk|Urban|Blažek|Kříž|Kovář|Kratochvíl|Bartoš|Vlček|Polák|Musil|"
           "Šimek|Konečný|Malý|Holub|Čech|Štěpánek|Staněk|Šťastný|Mareš|Sýkora|Říha|Ševčík"),
        _w("Náměstí Míru|Husova|Masarykova|Žižkova|Vinohradská|Komenského|Palackého|Nádražní|"
           "Školní|Zahradní|Sokolská|Tyršova|Jiráskova|Smetanova|Havlíčkova|Třída Svobody|"
           "Dlouhá|Krátká|Lesní|Polní|U Potoka|Na Výsluní"),
        _w("Praha|Brno|Ostrava|Plzeň|Liberec|Olomouc|České Budějovice|Hradec Králové|Ústí nad "
           "Labem|Pardubice|Zlín|Havířov|Kladno|Most|Opava|Frýdek-Místek|Karviná|Jihlava|"
           "Teplice|Děčín|Karlovy Vary|Chomutov|Mladá Boleslav|Prostějov|Přerov|Česká Lípa|"
           "Třebíč|Třinec|Tábor|Znojmo|Příbram|Cheb|Kolín|Trutnov|Písek|Kroměříž|Šumperk"),
        _w("zavolat odpoledne|dodání příští týden|platba po splatnosti|zákazník od roku 2011|"
           "změna adresy|poskytnuta sleva 5 %|poškozený balík|schůzka v úterý|||nebere "
           "telefon|spokojený zákazník|stěhování do Brna|čeká na potvrzení"),
        "Kč", "dmy.",
    ),
    Locale(
        "hu", "cp1250", ";",
        _w("Azonosító|Vezetéknév|Keresztnév|Cím|Irányítószám|Település|Telefonszám|Születési "
           "dátum|Összeg|Megjegyzés"),
        _w("László|István|József|Zoltán|Sándor|Gábor|Ferenc|Attila|Péter|Katalin|Erzsébet|"
           "Ildikó|Éva|Zsófia|Réka|Gergő|Bence|Dávid|Levente|Csenge|Dorottya|Tünde|Judit|"
           "Ágnes|Gyöngyi|Enikő|Győző|Ödön|Árpád|Tibor|Lajos|Mária|Zsuzsanna|Krisztina|Bálint|"
           "Márton|Máté|Dániel|Kristóf|Nóra|Eszter|Boglárka|Emőke"),
        _w("Nagy|Kovács|Tóth|Szabó|Horváth|Varga|Kiss|Molnár|Németh|Farkas|Balogh|Papp|Takács|"
           "Juhász|Lakatos|Mészáros|Oláh|Simon|Rácz|Fekete|Szilágyi|Török|Fehér|Balázs|Gál|"
           "Szűcs|Kocsis|Pintér|Fodor|Szalai|Sipos|Magyar|Lukács|Gulyás|Biró|Király|Katona|"
           "Fazekas|Hegedűs|Deák|Bálint|Illés|Vörös|Szőke|Soós|Bognár|Jónás"),
        _w("Kossuth Lajos utca|Petőfi Sándor utca|Rákóczi út|Fő tér|Dózsa György út|Ady Endre "
           "utca|Széchenyi István tér|Jókai Mór utca|Arany János utca|Béke utca|Szabadság tér|"
           "Hunyadi utca|Kölcsey utca|Vörösmarty tér|Üllői út|Váci utca|Erzsébet körút"),
        _w("Budapest|Debrecen|Szeged|Miskolc|Pécs|Győr|Nyíregyháza|Kecskemét|Székesfehérvár|"
           "Szombathely|Szolnok|Érd|Tatabánya|Sopron|Veszprém|Békéscsaba|Zalaegerszeg|Eger|"
           "Nagykanizsa|Hódmezővásárhely|Dunaújváros|Kaposvár|Salgótarján|Cegléd|Baja|Ózd|Vác|"
           "Gödöllő|Szekszárd|Gyöngyös|Esztergom|Jászberény|Mosonmagyaróvár|Siófok|Mohács"),
        _w("délután visszahívni|szállítás jövő héten|fizetés késik|ügyfél 2010 óta|"
           "címváltozás|5 % kedvezmény megadva|sérült csomag|találkozó kedden|||nem veszi fel|"
           "elégedett ügyfél|költözik Győrbe|visszaigazolásra vár"),
        "Ft", "ymd.",
    ),
    Locale(
        "hr", "cp1250", ";",
        _w("Broj|Ime|Prezime|Adresa|Poštanski broj|Grad|Telefon|Datum rođenja|Iznos|Napomena"),
        _w("Ivan|Marko|Luka|Ana|Petra|Željko|Dražen|Đuro|Tomislav|Josip|Stjepan|Nikola|Ivana|"
           "Marija|Mateja|Lucija|Katarina|Dario|Goran|Zoran|Mirela|Snježana|Božidar|Ljiljana|"
           "Vesna|Tihomir|Damir|Zdravko"),
        _w("Horvat|Kovačević|Babić|Marić|Jurić|Novak|Kovačić|Knežević|Vuković|Marković|"
           "Petrović|Matić|Tomić|Pavlović|Božić|Blažević|Grgić|Pavić|Radić|Perić|Šimić|Kovač|"
           "Lovrić|Klarić|Jukić|Vidović|Filipović|Mandić|Šarić|Brkić|Bošnjak|Đurić|Čović|"
           "Šimunović|Žužul|Galić|Mikulić|Barišić|Pranjić|Bašić|Ćorić|Ćosić"),
        _w("Ilica|Vukovarska ulica|Ulica kralja Zvonimira|Trg bana Jelačića|Savska cesta|"
           "Ulica Ivana Gundulića|Šetalište Franje Tuđmana|Put Žnjana|Obala Hrvatske mornarice|"
           "Ulica Matije Gupca|Trg Stjepana Radića|Frankopanska ulica|Ulica Ruđera Boškovića"),
        _w("Zagreb|Split|Rijeka|Osijek|Zadar|Velika Gorica|Slavonski Brod|Pula|Karlovac|Sisak|"
           "Varaždin|Šibenik|Dubrovnik|Bjelovar|Kaštela|Samobor|Vinkovci|Koprivnica|Đakovo|"
           "Vukovar|Čakovec|Požega|Zaprešić|Sinj|Virovitica|Solin|Kutina|Petrinja|Križevci|"
           "Crikvenica|Poreč|Rovinj|Makarska|Metković|Čepin|Knin"),
        _w("nazvati poslijepodne|isporuka sljedeći tjedan|plaćanje kasni|kupac od 2009.|"
           "promjena adrese|odobren popust 5 %|oštećen paket|sastanak u utorak|||ne javlja se|"
           "zadovoljan kupac|seli se u Đakovo|čeka potvrdu"),
        "€", "dmy.",
    ),
    Locale(
        "ro", "cp1250", ";",
        _w("Nr.|Prenume|Nume|Adresă|Cod poştal|Localitate|Telefon|Data naşterii|Sumă|"
           "Observaţii"),
        _w("Ştefan|Mădălina|Răzvan|Ionuţ|Andrei|Alexandru|Mihai|Elena|Ioana|Maria|Cristina|"
           "Gheorghe|Vasile|Florin|Bogdan|Cătălin|Adrian|Marian|Ana|Raluca|Andreea|Alina|Irina|"
           "Călin|Tudor|Ilinca|Oana|Laurenţiu|Sorin|Doina"),
        _w("Popescu|Ionescu|Dumitrescu|Stănescu|Constantinescu|Gheorghiu|Răducanu|Popa|Pop|"
           "Radu|Dumitru|Stan|Stoica|Matei|Ciobanu|Ene|Munteanu|Moldovan|Nistor|Florea|Dinu|"
           "Lazăr|Toma|Mihăilescu|Marinescu|Bălan|Cristea|Neagu|Mocanu|Şerban|Ţurcanu|Vlădescu|"
           "Creţu|Grigoraş|Bucur|Stoian|Cârstea"),
        _w("Strada Mihai Eminescu|Bulevardul Unirii|Calea Victoriei|Strada Ştefan cel Mare|"
           "Piaţa Unirii|Strada Florilor|Aleea Trandafirilor|Şoseaua Kiseleff|Strada "
           "Independenţei|Bulevardul Decebal"),
        _w("Bucureşti|Iaşi|Constanţa|Timişoara|Braşov|Piteşti|Galaţi|Brăila|Târgu Mureş|"
           "Râmnicu Vâlcea|Cluj-Napoca|Craiova|Ploieşti|Oradea|Arad|Sibiu|Bacău|Baia Mare|"
           "Buzău|Botoşani|Satu Mare|Suceava|Piatra Neamţ|Târgu Jiu|Focşani|Tulcea|Târgovişte|"
           "Reşiţa|Bistriţa|Slatina|Călăraşi|Alba Iulia|Giurgiu|Deva|Zalău|Bârlad|Mediaş"),
        _w("de sunat după-amiază|livrare săptămâna viitoare|plată întârziată|client din 2008|"
           "adresă schimbată|reducere de 5 % acordată|colet deteriorat|întâlnire marţi|||"
           "nu răspunde|client mulţumit|se mută la Iaşi|aşteaptă confirmarea"),
        "lei", "dmy.",
    ),
    Locale(
        "ru", "cp1251", ";",
        _w("№|Фамилия|Имя|Отчество|Адрес|Индекс|Город|Телефон|Дата рождения|Сумма|Примечание"),
        _w("Александр|Сергей|Дмитрий|Андрей|Алексей|Максим|Евгений|Иван|Михаил|Ольга|Елена|"
           "Татьяна|Наталья|Ирина|Светлана|Анна|Мария|Юлия|Артём|Никита|Владимир|Николай|Юрий|"
           "Екатерина|Людмила|Галина|Валентина|Ксения|Дарья|Алёна|Пётр|Фёдор"),
        _w("Иванов|Смирнов|Кузнецов|Попов|Васильев|Петров|Соколов|Михайлов|Новиков|Фёдоров|"
           "Морозов|Волков|Алексеев|Лебедев|Семёнов|Егоров|Павлов|Козлов|Степанов|Николаев|"
           "Орлов|Андреев|Макаров|Никитин|Захаров|Зайцев|Соловьёв|Борисов|Яковлев|Григорьев|"
           "Романов|Воробьёв|Сергеев|Кузьмин|Фролов|Королёв|Гусев|Киселёв|Ильин|Поляков|"
           "Сорокин|Виноградов|Ковалёв|Белов|Медведев|Жуков|Щербаков|Чернышёв|Журавлёв"),
        _w("ул. Ленина|ул. Советская|пр. Мира|ул. Гагарина|ул. Пушкина|ул. Садовая|"
           "ул. Молодёжная|ул. Школьная|ул. Лесная|ул. Центральная|ул. Набережная|"
           "пер. Почтовый|ул. Комсомольская|ул. Октябрьская|Невский пр.|ул. Тверская|"
           "ш. Энтузиастов"),
        _w("Москва|Санкт-Петербург|Новосибирск|Екатеринбург|Казань|Нижний Новгород|Челябинск|"
           "Самара|Омск|Ростов-на-Дону|Уфа|Красноярск|Воронеж|Пермь|Волгоград|Краснодар|"
           "Саратов|Тюмень|Тольятти|Ижевск|Барнаул|Ульяновск|Иркутск|Хабаровск|Ярославль|"
           "Владивосток|Махачкала|Томск|Оренбург|Кемерово|Рязань|Астрахань|Набережные Челны|"
           "Пенза|Киров|Липецк|Чебоксары|Калининград|Тула|Курск|Сочи|Ставрополь|Орёл"),
        _w("перезвонить после обеда|доставка на следующей неделе|оплата просрочена|клиент с "
           "2015 года|адрес изменён|скидка 5 % предоставлена|посылка повреждена|встреча во "
           "вторник|||не отвечает|довольный клиент|переезжает в Казань|ждёт подтверждения"),
        "руб.", "dmy.",
    ),
    Locale(
        "uk", "cp1251", ";",
        _w("№|Прізвище|Ім'я|По батькові|Адреса|Індекс|Місто|Телефон|Дата народження|Сума|"
           "Примітка"),
        _w("Олександр|Іван|Оксана|Юлія|Наталія|Євген|Андрій|Сергій|Дмитро|Микола|Василь|Петро|"
           "Ольга|Тетяна|Ірина|Світлана|Галина|Марія|Олена|Богдан|Тарас|Ярослав|Віталій|Юрій|"
           "Зоряна|Соломія|Ґанна"),
        _w("Шевченко|Коваленко|Бондаренко|Ткаченко|Кравченко|Олійник|Шевчук|Поліщук|Бондар|"
           "Ткачук|Мельник|Лисенко|Марченко|Руденко|Савченко|Мороз|Кравчук|Петренко|Клименко|"
           "Павленко|Левченко|Іваненко|Гончаренко|Карпенко|Харченко|Сидоренко|Кузьменко|"
           "Гнатюк|Романюк|Мельничук|Ковальчук|Приходько|Юрченко|Їжакевич|Гаврилюк"),
        _w("вул. Шевченка|вул. Хрещатик|просп. Незалежності|вул. Франка|вул. Лесі Українки|"
           "вул. Грушевського|вул. Січових Стрільців|вул. Соборна|вул. Миру|вул. Садова"),
        _w("Київ|Харків|Львів|Одеса|Дніпро|Запоріжжя|Вінниця|Полтава|Чернігів|Черкаси|Житомир|"
           "Суми|Хмельницький|Чернівці|Рівне|Івано-Франківськ|Кропивницький|Тернопіль|Луцьк|"
           "Біла Церква|Ужгород|Миколаїв|Херсон|Кременчук|Кам'янець-Подільський|Ніжин|Умань"),
        _w("передзвонити після обіду|доставка наступного тижня|оплата прострочена|клієнт з "
           "2016 року|адресу змінено|знижка 5 % надана|посилка пошкоджена|зустріч у вівторок|||"
           "не відповідає|задоволений клієнт|переїжджає до Львова|чекає на підтвердження"),
        "грн", "dmy.",
    ),
    Locale(
        "bg", "cp1251", ";",
        _w("№|Име|Презиме|Фамилия|Адрес|Пощенски код|Град|Телефон|Дата на раждане|Сума|"
           "Бележка"),
        _w("Георги|Иван|Димитър|Николай|Петър|Христо|Стоян|Йордан|Мария|Елена|Йорданка|Пенка|"
           "Иванка|Цветелина|Росица|Десислава|Ивайло|Калоян|Васил|Тодор|Радослав"),
        _w("Иванов|Георгиев|Димитров|Петров|Николов|Христов|Стоянов|Тодоров|Илиев|Василев|"
           "Атанасов|Петкова|Ангелов|Йорданов|Колев|Маринов|Попов|Русева|Стефанов|Костов|"
           "Кирилов|Цветков|Ганчев|Жеков|Вълчев|Кънчев|Бъчваров"),
        _w("ул. Витоша|бул. Васил Левски|ул. Граф Игнатиев|бул. Цар Освободител|ул. Раковски|"
           "бул. Христо Ботев|ул. Шипка|ж.к. Младост"),
        _w("София|Пловдив|Варна|Бургас|Русе|Стара Загора|Плевен|Сливен|Добрич|Шумен|Перник|"
           "Хасково|Ямбол|Пазарджик|Благоевград|Велико Търново|Враца|Габрово|Асеновград|Видин|"
           "Казанлък|Кърджали|Кюстендил|Монтана|Търговище|Ловеч|Силистра|Разград|Смолян"),
        _w("да се обади следобед|доставка следващата седмица|плащането закъснява|клиент от "
           "2014 г.|сменен адрес|отстъпка 5 %|повреден пакет|среща във вторник|||не отговаря|"
           "доволен клиент"),
        "лв.", "dmy.",
    ),
    Locale(
        "tr", "cp1254", ";",
        _w("No|Adı|Soyadı|Adres|Posta kodu|Şehir|Telefon|Doğum tarihi|Tutar|Açıklama"),
        _w("Mehmet|Ahmet|Mustafa|Ayşe|Fatma|Emine|Hüseyin|Hatice|İbrahim|Zeynep|Elif|Yağmur|"
           "Çağlar|Gökhan|Özlem|Şükrü|Ömer|Büşra|Tuğba|Ilgın|Ali|Hasan|Murat|Yusuf|Merve|Esra|"
           "Sevgi|Gülşen|Şeyma|Ümit|Özge|Can|Burak|Eda|Deniz|Oğuz|Çiğdem|Doğan|Kübra|İrem"),
        _w("Yılmaz|Kaya|Demir|Şahin|Çelik|Yıldız|Yıldırım|Öztürk|Aydın|Özdemir|Arslan|Doğan|"
           "Kılıç|Aslan|Çetin|Kara|Koç|Kurt|Özkan|Şimşek|Polat|Özcan|Korkmaz|Çakır|Erdoğan|"
           "Yavuz|Acar|Şen|Aktaş|Güler|Yalçın|Güneş|Bozkurt|Bulut|Keskin|Ünal|Turan|Gül|Özer|"
           "Işık|Kaplan|Avcı|Sarı|Tekin|Taş|Köse|Yüksel|Ateş|Aksoy|Çiftçi|Güngör|Altıntaş"),
        _w("Atatürk Caddesi|Cumhuriyet Mahallesi|İstiklal Caddesi|Gül Sokak|Çiçek Sokak|Barış "
           "Mahallesi|İnönü Bulvarı|Fevzi Çakmak Caddesi|Mimar Sinan Sokak|Yeşilköy Mahallesi|"
           "Bağdat Caddesi|Şehitler Caddesi|Menekşe Sokak|Çamlıca Yolu|Ihlamur Sokak"),
        _w("İstanbul|Ankara|İzmir|Bursa|Antalya|Konya|Adana|Şanlıurfa|Gaziantep|Kocaeli|Mersin|"
           "Diyarbakır|Hatay|Manisa|Kayseri|Samsun|Balıkesir|Kahramanmaraş|Van|Aydın|Denizli|"
           "Sakarya|Muğla|Eskişehir|Tekirdağ|Çanakkale|Kırşehir|Uşak|Iğdır|Ağrı|Trabzon|"
           "Malatya|Erzurum|Elazığ|Kütahya|Çorum|Düzce|Muş|Niğde|Nevşehir|Kırıkkale|Şırnak"),
        _w("öğleden sonra aranacak|teslimat gelecek hafta|ödeme gecikti|2013'ten beri müşteri|"
           "adres değişti|%5 indirim yapıldı|paket hasarlı|salı günü görüşme|||telefonu "
           "açmıyor|memnun müşteri|İzmir'e taşınıyor|onay bekliyor"),
        "TL", "dmy.",
    ),
    Locale(
        "ar", "cp1256", ",",
        _w("الرقم|الاسم|اسم العائلة|العنوان|الرمز البريدي|المدينة|الهاتف|تاريخ الميلاد|المبلغ|"
           "ملاحظات"),
        _w("محمد|أحمد|علي|عمر|خالد|يوسف|إبراهيم|عبد الله|فاطمة|عائشة|مريم|نور|سارة|ليلى|زينب|"
           "حسن|حسين|مصطفى|سعيد|طارق|ياسر|رشا|هدى|سلمى|منى|ريم|عبد الرحمن|إسماعيل|جمال|كريم"),
        _w("العلي|الحسن|الأحمد|السيد|الخطيب|النجار|الحداد|منصور|حداد|عثمان|الشمري|القحطاني|"
           "العتيبي|الزهراني|الغامدي|المصري|التميمي|الدوسري|العنزي|الحربي|الشهري|المطيري|"
           "الهاشمي|سليمان|خليل"),
        _w("شارع الملك فهد|شارع الجمهورية|شارع الحرية|شارع التحرير|طريق الملك عبد العزيز|"
           "شارع الاستقلال|شارع النيل|حي النزهة|حي الروضة|شارع الجامعة"),
        _w("القاهرة|الإسكندرية|الرياض|جدة|مكة المكرمة|دبي|أبو ظبي|عمّان|بيروت|دمشق|بغداد|"
           "الدار البيضاء|تونس|الجزائر|الدوحة|الكويت|مسقط|المنامة|الجيزة|المدينة المنورة|"
           "الدمام|الشارقة|حلب|البصرة|الموصل|طرابلس|الرباط|فاس|مراكش|وهران|صنعاء|عدن|الخرطوم"),
        _w("الاتصال بعد الظهر|التوصيل الأسبوع القادم|الدفع متأخر|عميل منذ 2012|تم تغيير "
           "العنوان|خصم 5 %|الطرد تالف|موعد يوم الثلاثاء|||لا يرد|عميل راض|ينتقل إلى جدة|"
           "بانتظار التأكيد"),
        "ر.س", "dmy/",
    ),
    Locale(
        "ja", "cp932", ",",
        _w("顧客番号|氏名|フリガナ|郵便番号|都道府県|住所|電話番号|生年月日|金額|備考"),
        _w("太郎|花子|健一|美咲|翔太|陽菜|大輔|由美|直樹|さくら|結衣|拓也|恵子|誠|愛|ﾀｶｼ"),
        _w("佐藤|鈴木|高橋|田中|伊藤|渡辺|山本|中村|小林|加藤|吉田|山田|佐々木|山口|松本|井上|"
           "木村|林|斎藤|清水"),
        _w("千代田区丸の内1-1-1|中央区銀座4-5-6|札幌市中央区北1条西2丁目|名古屋市中区栄3-4-5|"
           "大阪市北区梅田1-2-3|横浜市西区みなとみらい2-3-1|福岡市博多区博多駅前2-1-1|"
           "京都市下京区烏丸通七条下ル|神戸市中央区三宮町1-1|仙台市青葉区一番町4-1"),
        _w("東京都|大阪府|北海道|神奈川県|愛知県|福岡県|京都府|兵庫県|埼玉県|千葉県|静岡県|"
           "広島県|宮城県|新潟県|長野県|沖縄県"),
        _w("午後に折り返し電話|来週発送予定|支払い遅延|２０１５年からの顧客|住所変更済み|"
           "５％割引適用|荷物破損のため再送|火曜日に打ち合わせ|||電話に出ない|"
           "満足しているお客様|大阪へ引っ越し予定|確認待ち|①至急対応|月末まで～"),
        "円", "ymd/",
    ),
    Locale(
        "zh", "gb18030", ",",
        _w("序号|姓名|性别|身份证号|手机号|省份|城市|地址|金额|备注"),
        _w("伟|娜|敏|洋|静|帆|磊|丽|杰|芳|明|强|超|红|军|鹏|平|峰|涛|琳|凯|艳|婷|佳|亮|晨|雪|"
           "刚|颖|博|鑫|雨"),
        _w("王|李|张|刘|陈|杨|赵|黄|周|吴|徐|孙|马|朱|胡|郭|何|高|林|罗|郑|梁|谢|宋|唐|许|韩|"
           "冯|曹|彭|曾|肖|田|董|潘|袁|欧阳|司马"),
        _w("朝阳区建国路88号|浦东新区世纪大道100号|天河区体育西路123号|南山区科技园南路5号|"
           "武侯区人民南路四段12号|西湖区文三路478号|洪山区珞喻路1037号|雁塔区小寨东路126号|"
           "鼓楼区中山路18号|渝中区解放碑步行街8号"),
        _w("北京|上海|广州|深圳|成都|杭州|武汉|西安|南京|重庆|天津|苏州|长沙|郑州|青岛|沈阳|"
           "宁波|东莞|无锡|厦门|昆明|合肥|福州|济南|佛山"),
        _w("下午回电|下周发货|付款逾期|2015年起的老客户|地址已变更|已打九五折|包裹破损已重发|"
           "周二见面|||电话无人接听|客户满意|搬到上海|等待确认|请勿在中午前致电"),
        "元", "ymd-",
    ),
    Locale(
        "ko", "cp949", ",",
        _w("고객번호|이름|성|주소|우편번호|도시|전화번호|생년월일|금액|비고"),
        _w("민준|서연|도윤|지우|하준|서윤|시우|하은|주원|지호|예준|수아|지민|채원|현우|유진|"
           "성민|영희|철수"),
        _w("김|이|박|최|정|강|조|윤|장|임|한|오|서|신|권|황|안|송|류|홍"),
        _w("세종대로|테헤란로|강남대로|종로|을지로|올림픽로|해운대로|중앙로|동성로|충장로"),
        _w("서울특별시|부산광역시|대구광역시|인천광역시|광주광역시|대전광역시|울산광역시|수원시|"
           "성남시|고양시|용인시|창원시|청주시|전주시|제주시"),
        _w("오후에 다시 전화|다음 주 배송 예정|결제 지연|2015년부터 고객|주소 변경됨|5% 할인 적용|"
           "포장 파손으로 재발송|화요일 미팅|||전화 안 받음|만족한 고객|부산으로 이사 예정|"
           "확인 대기 중"),
        "원", "ymd.",
    ),
    Locale(
        "zh-hant", "cp950", ",",
        _w("序號|姓名|性別|身分證字號|手機|縣市|區域|地址|金額|備註"),
        _w("志明|春嬌|家豪|怡君|俊傑|雅婷|冠宇|淑芬|建宏|美玲|宗翰|佳穎|承恩|詩涵"),
        _w("陳|林|黃|張|李|王|吳|劉|蔡|楊|許|鄭|謝|郭|洪|曾|邱|廖|賴|周"),
        _w("忠孝東路四段|中山北路二段|信義路五段|民生東路|復興南路一段|敦化北路|和平東路|中正路|"
           "成功路|文化路"),
        _w("臺北市|新北市|桃園市|臺中市|臺南市|高雄市|基隆市|新竹市|嘉義市|宜蘭縣|花蓮縣|臺東縣|"
           "屏東縣|澎湖縣|金門縣"),
        _w("下午回電|下週出貨|付款逾期|自2015年起的客戶|地址已變更|已打九五折|包裹破損已重寄|"
           "週二見面|||電話無人接聽|客戶滿意|搬到高雄|等待確認|請勿在中午前來電"),
        "元", "ymd/",
    ),
]


def _date(rng: random.Random, order: str) -> str:
    d, m, y = rng.randint(1, 28), rng.randint(1, 12), rng.randint(1940, 2005)
    sep = order[3]
    return (f"{d:02}{sep}{m:02}{sep}{y}" if order.startswith("dmy")
            else f"{y}{sep}{m:02}{sep}{d:02}")


def _amount(rng: random.Random, locale: Locale) -> str:
    value = rng.randint(100, 999_999) / 100
    if locale.delimiter == ";":  # decimal comma; thousands with a no-break space
        whole, cents = f"{value:.2f}".split(".")
        if len(whole) > 3:
            whole = whole[:-3] + "\u00a0" + whole[-3:]
        return f"{whole},{cents} {locale.currency}"
    return f"{value:,.2f} {locale.currency}"


def _row(rng: random.Random, locale: Locale, number: int) -> list[str]:
    if locale.code in ("ja", "zh", "ko", "zh-hant"):
        name = rng.choice(locale.last) + rng.choice(locale.first)
    else:
        name = rng.choice(locale.first)
    return [
        str(number), name, rng.choice(locale.last),
        f"{rng.choice(locale.streets)} {rng.randint(1, 120)}",
        f"{rng.randint(10_000, 99_999)}", rng.choice(locale.cities),
        f"+{rng.randint(30, 99)} {rng.randint(100, 999)} {rng.randint(100_000, 9_999_999)}",
        _date(rng, locale.date), _amount(rng, locale), rng.choice(locale.remarks),
    ]


def make_text(locale: Locale, size: int, rng: random.Random, delimiter: str | None = None,
              encoding: str | None = None) -> str:
    """A CSV of about ``size`` bytes once encoded: the header and rows, CRLF line ends.

    Small files (under 1 KB) keep two to four of the columns, as small sheets do.
    """
    columns = list(range(len(locale.header)))
    if size < 1000:
        columns = sorted(rng.sample(columns[1:], rng.randint(2, 4)))
    out = io.StringIO()
    writer = csv.writer(out, delimiter=delimiter or locale.delimiter, lineterminator="\r\n")
    writer.writerow([locale.header[i] for i in columns])
    encoded = len(out.getvalue().encode(encoding or locale.encoding))
    number = 0
    while True:
        number += 1
        line = io.StringIO()
        csv.writer(line, delimiter=delimiter or locale.delimiter,
                   lineterminator="\r\n").writerow(
            [v for i, v in enumerate(_row(rng, locale, number)) if i in columns])
        grown = len(line.getvalue().encode(encoding or locale.encoding))
        if number > 1 and encoded + grown > size:
            return out.getvalue()
        out.write(line.getvalue())
        encoded += grown


@dataclass(frozen=True)
class Case:
    """One kind of generated file: which locale, and how its text becomes bytes."""

    label: str
    locale: Locale
    encode: Callable[[str], bytes]
    delimiter: str | None = None

    def make(self, size: int, rng: random.Random) -> tuple[str, bytes]:
        """(text, bytes) of a file of about ``size`` bytes that is not pure ASCII."""
        for _ in range(100):
            text = make_text(self.locale, size, rng, self.delimiter,
                             "utf-16-le" if self.delimiter == "\t" else None)
            if not text.isascii():
                return text, self.encode(text)
        raise RuntimeError(f"{self.label}: no non-ASCII text generated")


def _utf16_bom(text: str) -> bytes:
    return codecs.BOM_UTF16_LE + text.encode("utf-16-le")


def _encoder(encoding: str) -> Callable[[str], bytes]:
    return lambda text: text.encode(encoding)


CASES = [Case(f"{loc.encoding} {loc.code}", loc, _encoder(loc.encoding)) for loc in LOCALES]
_BY_CODE = {loc.code: loc for loc in LOCALES}
CASES += [
    Case("utf-16 de (Unicode Text)", _BY_CODE["de"], _utf16_bom, "\t"),
    Case("utf-16 ru (Unicode Text)", _BY_CODE["ru"], _utf16_bom, "\t"),
    Case("utf-16 ja (Unicode Text)", _BY_CODE["ja"], _utf16_bom, "\t"),
    Case("utf-16 ar (Unicode Text)", _BY_CODE["ar"], _utf16_bom, "\t"),
    Case("utf-16-be zh", _BY_CODE["zh"],
         lambda t: codecs.BOM_UTF16_BE + t.encode("utf-16-be"), "\t"),
    Case("utf-16-le pl, no BOM", _BY_CODE["pl"], lambda t: t.encode("utf-16-le"), "\t"),
]


def blocks(data: bytes) -> Iterator[bytes]:
    """The file as the store receives it, a block at a time."""
    for at in range(0, len(data), BLOCK):
        yield data[at:at + BLOCK]


def sniff(data: bytes) -> str | None:
    """The text the store would keep for ``data``: None when it refuses the file."""
    sniffer = EncodingSniffer()
    wide = sniffer.start(data[:EncodingSniffer.HEAD_BYTES])
    if wide is not None:
        return codecs.decode(data, wide)
    for block in blocks(data):
        sniffer.feed(block)
    try:
        decision = sniffer.finish()
    except EncodingUncertain:
        return None
    return data.decode(decision.encoding)


def reference(data: bytes) -> str | None:
    """What the store read before: charset-normalizer's best guess on the first MiB."""
    best = charset_normalizer.from_bytes(data[:BLOCK]).best()
    if best is None:
        return None
    try:
        return data.decode(best.encoding)
    except UnicodeDecodeError:
        return None


def main() -> None:
    """Print right / refused / wrong per encoding and size, and the totals."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=40,
                        help="files per encoding at 100 B (half at 10 KB, 2 at 1 MB)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--verbose", action="store_true", help="print every miss")
    args = parser.parse_args()
    counts = {"100 B": args.files, "10 KB": max(1, args.files // 2), "1 MB": 2}
    totals: dict[str, Counter[str]] = {s: Counter() for s in SIZES}
    ref_totals: dict[str, Counter[str]] = {s: Counter() for s in SIZES}
    seconds: dict[str, float] = dict.fromkeys(SIZES, 0.0)
    print(f"{'file':28}" + "".join(f"{s:>22}" for s in SIZES))
    print(f"{'':28}" + "".join(f"{'right refused wrong':>22}" for _ in SIZES))
    for case in CASES:
        cells = []
        for size_label, size in SIZES.items():
            outcome: Counter[str] = Counter()
            for i in range(counts[size_label]):
                rng = random.Random(f"{args.seed}/{case.label}/{size_label}/{i}")
                text, data = case.make(size, rng)
                started = time.perf_counter()
                got = sniff(data)
                seconds[size_label] += time.perf_counter() - started
                verdict = "refused" if got is None else "right" if got == text else "wrong"
                outcome[verdict] += 1
                ref = reference(data)
                ref_totals[size_label]["right" if ref == text else "wrong"] += 1
                if args.verbose and verdict != "right":
                    print(f"  {case.label} {size_label} #{i}: {verdict}: {data[:80]!r}")
            totals[size_label].update(outcome)
            cells.append(f"{outcome['right']:>9}{outcome['refused']:>8}{outcome['wrong']:>6}")
        print(f"{case.label:28}" + "".join(f"{c:>22}" for c in cells))
    print()
    for size_label in SIZES:
        t, r = totals[size_label], ref_totals[size_label]
        n = sum(t.values())
        print(f"{size_label:>6}: {n:4} files  right {t['right'] / n:6.1%}  refused "
              f"{t['refused'] / n:6.1%}  wrong {t['wrong'] / n:6.1%}   "
              f"(reference: right {r['right'] / n:6.1%}, wrong {r['wrong'] / n:6.1%})   "
              f"{seconds[size_label] / n * 1000:7.1f} ms a file")


if __name__ == "__main__":
    main()
