"""Body Part Examined (0018,0015) defined terms -> SNOMED CT, per DICOM PS3.16 Annex L.

Annex L ("Correspondence of Anatomic Region Codes and Body Part Examined Defined Terms")
pairs each defined term of (0018,0015) with a code of CID 4031 / CID 4 (and, for the
veterinary terms, CID 7482/7483). Where editions of the table differ, the code that
PS3.16 currently lists as active is used (e.g. CHEST/THORAX 816094009 since CP-2145,
CTSPINE/TLSPINE/LSSPINE 12172xxxxx, LLUMBAR/RLUMBAR 101721xxxx). ARM and LEG are older
defined terms kept because they still occur in archived data. The fetal terms have no
code in Annex L: they map to a display-only Coding.

Rows: ``TERM  CODE  MEANING`` (CODE ``-`` = no code). DISTALPHALANX is the one row whose
code is UMLS rather than SNOMED CT.
"""

from __future__ import annotations

from typing import Any

from .codes import SNOMED, UMLS

_TABLE = """
3RDVENTRICLE 49841001 Third ventricle
4THVENTRICLE 35918002 Fourth ventricle
ABDOMEN 818981001 Abdomen
ABDOMENPELVIS 818982008 Abdomen and Pelvis
ABDOMINALAORTA 7832008 Abdominal aorta
ACA 60176003 Anterior cerebral artery
ACJOINT 85856004 Acromioclavicular joint
ADRENAL 23451007 Adrenal gland
AMNIOTICFLUID 77012006 Amniotic fluid
ANKLE 70258002 Ankle joint
ANTCARDIACV 194996006 Anterior cardiac vein
ANTCOMMA 8012006 Anterior communicating artery
ANTECUBITALV 128553008 Antecubital vein
ANTSPINALA 17388009 Anterior spinal artery
ANTTIBIALA 68053000 Anterior tibial artery
ANUSRECTUMSIGMD 110612005 Anus, rectum and sigmoid colon
AORTA 15825003 Aorta
AORTICARCH 57034009 Aortic arch
APPENDIX 66754008 Appendix
ARM 40983000 Upper arm
ARTERY 51114001 Artery
ASCAORTA 54247002 Ascending aorta
ASCENDINGCOLON 9040008 Ascending colon
AXILLA 91470000 Axilla
AXILLARYA 67937003 Axillary Artery
AXILLARYV 68705008 Axillary vein
AZYGOSVEIN 72107004 Azygos vein
BACK 77568009 Back
BASILARA 59011009 Basilar artery
BILEDUCT 28273000 Bile duct
BILIARYTRACT 34707002 Biliary tract
BLADDER 89837001 Bladder
BLADDERURETHRA 110837003 Bladder and urethra
BRACHIALA 17137000 Brachial artery
BRACHIALV 20115005 Brachial vein
BRAIN 12738006 Brain
BREAST 76752008 Breast
BRONCHUS 955009 Bronchus
BULB 21479005 Carotid bulb
BUTTOCK 46862004 Buttock
CALCANEUS 80144004 Calcaneus
CALF 53840002 Calf of leg
CAROTID 69105007 Carotid Artery
CCA 32062004 Common carotid artery
CELIACA 57850000 Celiac artery
CEPHALICV 20699002 Cephalic vein
CEREBELLUM 113305005 Cerebellum
CEREBHEMISPHERE 372073000 Cerebral hemisphere
CEREBRALA 88556005 Cerebral artery
CERVIX 71252005 Cervix
CFA 181347005 Common femoral artery
CFV 397363009 Common femoral vein
CHEEK 60819002 Cheek
CHEST 816094009 Chest
CHESTABDOMEN 416550000 Chest and Abdomen
CHESTABDPELVIS 416775004 Chest, Abdomen and Pelvis
CHOROIDPLEXUS 80621003 Choroid plexus
CIRCLEOFWILLIS 11279006 Circle of Willis
CLAVICLE 51299004 Clavicle
COCCYX 64688005 Coccyx
COLON 71854001 Colon
COMILIACA 73634005 Common iliac artery
COMILIACV 46027005 Common iliac vein
COMMONBILEDUCT 79741001 Common bile duct
CORNEA 28726007 Cornea
CORONARYARTERY 41801008 Coronary artery
CORONARYSINUS 90219004 Coronary sinus
CSPINE 122494005 Cervical spine
CTSPINE 1217257000 Cervico-thoracic spine
CULDESAC 53843000 Rectouterine pouch
DESCAORTA 32672002 Descending aorta
DESCENDINGCOLON 32622004 Descending colon
DUODENUM 38848004 Duodenum
EAC 84301002 External auditory canal
EAR 117590005 Ear
ECA 22286001 External carotid artery
ELBOW 16953009 Elbow joint
ENDOARTERIAL 51114001 Endo-arterial
ENDOCARDIAC 80891009 Endo-cardiac
ENDOESOPHAGEAL 32849002 Endo-esophageal
ENDOMETRIUM 2739003 Endometrium
ENDONASAL 53342003 Endo-nasal
ENDONASOPHARYNYX 18962004 Endo-nasopharyngeal
ENDORECTAL 34402009 Endo-rectal
ENDORENAL 64033007 Endo-renal
ENDOURETERIC 87953007 Endo-ureteric
ENDOURETHRAL 13648007 Endo-urethral
ENDOVAGINAL 76784001 Endo-vaginal
ENDOVASCULAR 59820001 Endo-vascular
ENDOVENOUS 29092000 Endo-venous
ENDOVESICAL 48367006 Endo-vesical
EPIDIDYMIS 87644002 Epididymis
EPIGASTRIC 27947004 Epigastric region
ESOPHAGUS 32849002 Esophagus
EXTILIACA 113269004 External iliac artery
EXTILIACV 63507001 External iliac vein
EXTJUGV 71585003 External jugular vein
EXTREMITY 66019005 Extremity
EYE 81745001 Eye
EYELID 80243003 Eyelid
FACE 89545001 Face
FACIALA 23074001 Facial artery
FEMORALA 7657000 Femoral artery
FEMORALV 83419000 Femoral vein
FEMUR 71341001 Femur
FETALARM - Fetal arm
FETALDIGIT - Fetal digit
FETALHEART - Fetal heart
FETALLEG - Fetal leg
FETALPOLE - Fetal pole
FIBULA 87342007 Fibula
FINGER 7569003 Finger
FLANK 58602004 Flank
FONTANEL 79361005 Fontanel of skull
FOOT 56459004 Foot
FOREARM 14975008 Forearm
GALLBLADDER 28231008 Gallbladder
GASTRICV 110568007 Gastric vein
GENICULARA 128559007 Genicular artery
GESTSAC 300571009 Gestational sac
GLUTEAL 46862004 Gluteal region
GSV 60734001 Great saphenous vein
HAND 85562004 Hand
HEAD 69536005 Head
HEADNECK 774007 Head and Neck
HEART 80891009 Heart
HEPATICA 76015000 Hepatic artery
HEPATICV 8993003 Hepatic vein
HIP 24136001 Hip joint
HUMERUS 85050009 Humerus
HYPOGASTRIC 11708003 Hypogastric region
HYPOPHARYNX 81502006 Hypopharynx
IAC 361078006 Internal Auditory Canal
ICA 86117002 Internal carotid artery
ILEUM 34516001 Ileum
ILIACA 10293006 Iliac artery
ILIACV 244411005 Iliac vein
ILIUM 22356005 Ilium
INFMESA 33795007 Inferior mesenteric artery
INFVENACAVA 64131007 Inferior vena cava
INGUINAL 26893007 Inguinal region
INNOMINATEA 12691009 Innominate artery
INNOMINATEV 8887007 Innominate vein
INTILIACA 90024005 Internal iliac artery
INTJUGULARV 12123001 Internal jugular vein
INTMAMMARYA 69327007 Internal mammary artery
INTRACRANIAL 1101003 Intracranial
JAW 661005 Jaw region
JEJUNUM 21306003 Jejunum
JOINT 39352004 Joint
KIDNEY 64033007 Kidney
KNEE 72696002 Knee
LACRIMALA 59749000 Lacrimal artery
LARGEINTESTINE 14742008 Large intestine
LARYNX 4596009 Larynx
LATRIUM 82471001 Left atrium
LATVENTRICLE 66720007 Lateral Ventricle
LEG 30021000 Lower leg
LFEMORALA 113270003 Left femoral artery
LHEPATICV 273202007 Left hepatic vein
LHYPOCHONDRIAC 133945003 Left hypochondriac region
LINGUALA 113264009 Lingual artery
LINGUINAL 85119005 Left inguinal region
LIVER 10200004 Liver
LLQ 68505006 Left lower quadrant of abdomen
LLUMBAR 1017210004 Left lumbar region
LOWERLEG 30021000 Lower leg
LOWERLIMB 61685007 Lower limb
LPORTALV 70253006 Left portal vein
LPULMONARYA 50408007 Left pulmonary artery
LSPINE 122496007 Lumbar spine
LSSPINE 1217253001 Lumbo-sacral spine
LSUPPULMONARYV 43863001 Superior left pulmonary vein
LUMBAR 52612000 Lumbar region
LUMBARA 34635009 Lumbar artery
LUMEN 91747007 Lumen of blood vessel
LUNG 39607008 Lung
LUQ 86367003 Left upper quadrant of abdomen
LVENTRICLE 87878005 Left ventricle
MANDIBLE 91609006 Mandible
MASTOID 59066005 Mastoid bone
MAXILLA 70925003 Maxilla
MCA 17232002 Middle cerebral artery
MEDIASTINUM 72410000 Mediastinum
MESENTRICA 86570000 Mesenteric artery
MESENTRICV 128583004 Mesenteric vein
MIDHEPATICV 273099000 Middle hepatic vein
MORISONSPOUCH 243977002 Morisons pouch
MOUTH 123851003 Mouth
NASOPHARYNX 360955006 Nasopharynx
NECK 45048000 Neck
NECKCHEST 417437006 Neck and Chest
NECKCHESTABDOMEN 416152001 Neck, Chest and Abdomen
NECKCHESTABDPELV 416319003 Neck, Chest, Abdomen and Pelvis
NOSE 45206002 Nose
OCCIPTALV 32114007 Occipital vein
OCCPITALA 31145008 Occipital artery
OPHTHALMICA 53549008 Ophthalmic artery
OPTICCANAL 55024004 Optic canal
ORBIT 363654007 Orbital structure
OVARY 15497006 Ovary
PANCBILEDUCT 110621006 Pancreatic duct and bile duct systems
PANCREAS 15776009 Pancreas
PANCREATICDUCT 69930009 Pancreatic duct
PARASTERNAL 91691001 Parasternal
PARATHYROID 111002 Parathyroid
PAROTID 45289007 Parotid gland
PATELLA 64234005 Patella
PCA 70382005 Posterior cerebral artery
PELVIS 816092008 Pelvis
PELVISLOWEXTREMT 1231522001 Pelvis and lower extremities
PENILEA 282044005 Penile artery
PENIS 18911002 Penis
PERINEUM 38864007 Perineum
PERONEALA 8821006 Peroneal artery
PHANTOM 706342009 Phantom
PHARYNX 54066008 Pharynx
PHARYNXLARYNX 312535008 Pharynx and larynx
PLACENTA 78067005 Placenta
POPLITEALA 43899006 Popliteal artery
POPLITEALFOSSA 32361000 Popliteal fossa
POPLITEALV 56849005 Popliteal vein
PORTALV 32764006 Portal vein
POSCOMMA 43119007 Posterior communicating artery
POSTIBIALA 13363002 Posterior tibial artery
PROFFEMA 31677005 Profunda femoris artery
PROFFEMV 23438002 Profunda femoris vein
PROSTATE 41216001 Prostate
PULMONARYA 81040000 Pulmonary artery
PULMONARYV 122972007 Pulmonary vein
RADIALA 45631007 Radial artery
RADIUS 62413002 Radius
RADIUSULNA 110535000 Radius and ulna
RATRIUM 73829009 Right atrium
RECTUM 34402009 Rectum
RENALA 2841007 Renal artery
RENALV 56400007 Renal vein
RETROPERITONEUM 82849001 Retroperitoneum
RFEMORALA 69833005 Right femoral artery
RHEPATICV 272998002 Right hepatic vein
RHYPOCHONDRIAC 133946002 Right hypochondriac region
RIB 113197003 Rib
RINGUINAL 37117007 Right inguinal region
RLQ 48544008 Right lower quadrant of abdomen
RLUMBAR 1017211000 Right lumbar region
RPORTALV 73931004 Right portal vein
RPULMONARYA 78480002 Right pulmonary artery
RSUPPULMONARYV 8629005 Superior right pulmonary vein
RUQ 50519007 Right upper quadrant of abdomen
RVENTRICLE 53085002 Right ventricle
SAPHENOUSV 362072009 Saphenous vein
SCALP 41695006 Scalp
SCAPULA 79601000 Scapula
SCJOINT 7844006 Sternoclavicular joint
SCLERA 18619003 Sclera
SCROTUM 20233005 Scrotum
SELLA 42575006 Sella turcica
SEMVESICLE 64739004 Seminal vesicle
SESAMOID 58742003 Sesamoid bones of foot
SFA 181349008 Superficial femoral artery
SFJ 128587003 Saphenofemoral junction
SFV 397364003 Superficial femoral vein
SHOULDER 16982005 Shoulder
SIGMOID 60184004 Sigmoid colon
SIJOINT 39723000 Sacroiliac joint
SKULL 89546000 Skull
SMA 42258001 Superior mesenteric artery
SMALLINTESTINE 30315005 Small intestine
SPINALCORD 2748008 Spinal cord
SPINE 421060004 Spine
SPLEEN 78961009 Spleen
SPLENICA 22083002 Splenic artery
SPLENICV 35819009 Splenic vein
SSPINE 54735007 Sacrum
STERNUM 56873002 Sternum
STOMACH 69695003 Stomach
SUBCLAVIANA 36765005 Subclavian artery
SUBCLAVIANV 9454009 Subclavian vein
SUBCOSTAL 19695001 Subcostal
SUBMANDIBULAR 54019009 Submandibular gland
SUPRACLAVICULAR 77621008 Supraclavicular region of neck
SUPRAPUBIC 11708003 Suprapubic region
SUPTHYROIDA 72021004 Superior thyroid artery
SVC 48345005 Superior vena cava
TESTIS 40689003 Testis
THALAMUS 42695009 Thalamus
THIGH 68367000 Thigh
THORACICAORTA 113262008 Thoracic aorta
THORAX 816094009 Thorax
THUMB 76505004 Thumb
THYMUS 9875009 Thymus
THYROID 69748006 Thyroid
TIBIA 12611008 Tibia
TIBIAFIBULA 110536004 Tibia and fibula
TLSPINE 1217256009 Thoraco-lumbar spine
TMJ 53620006 Temporomandibular joint
TOE 29707007 Toe
TONGUE 21974007 Tongue
TRACHEA 44567001 Trachea
TRACHEABRONCHUS 110726009 Trachea and bronchus
TRANSVERSECOLON 485005 Transverse colon
TSPINE 122495006 Thoracic spine
ULNA 23416004 Ulna
ULNARA 44984001 Ulnar artery
UMBILICAL 90290004 Umbilical region
UMBILICALA 50536004 Umbilical artery
UMBILICALV 284639000 Umbilical vein
UPPERARM 40983000 Upper arm
UPPERLIMB 53120007 Upper limb
UPRURINARYTRACT 431491007 Upper urinary tract
URETER 87953007 Ureter
URETHRA 13648007 Urethra
UTERUS 35039007 Uterus
VAGINA 76784001 Vagina
VEIN 29092000 Vein
VERTEBRALA 85234005 Vertebral artery
VULVA 45292006 Vulva
WHOLEBODY 38266002 Entire body
WRIST 74670003 Wrist joint
ZYGOMA 13881006 Zygoma
ATLANTOAXIAL 62555009 Atlantal-axial joint
ATLANTOOCCIPITAL 20292002 Atlanto-occipital joint
CARPUS 8205005 Carpus
DIGIT 82680008 Digit
DISTALPHALANX C3669027 Distal phalanx
FOREFETLOCK 13190002 Fetlock of forelimb
FOREFOOT 419176008 Forefoot
FORENAVICULAR 30518006 Navicular of forefoot
FOREPASTERN 31329001 Pastern of forefoot
FRONTALSINUS 55060009 Frontal sinus
HINDFETLOCK 113351006 Fetlock of hindlimb
HINDFOOT 416804009 Hindfoot
HINDNAVICULAR 75772009 Navicular of hindfoot
HINDPASTERN 18525008 Pastern of hindfoot
LEGS 42694008 All legs
METACARPUS 36455000 Metacarpus
METATARSUS 280711000 Metatarsus
STIFLE 116010006 Stifle
TAIL 18149002 Coccygeal vertebrae
TARSUS 108371006 Tarsus
UGITRACT 62834003 Upper gastro-intestinal tract
URINARYTRACT 431938005 Urinary tract
WING 53036007 Wing
"""


def _parse(table: str) -> dict[str, tuple[str | None, str | None, str]]:
    rows: dict[str, tuple[str | None, str | None, str]] = {}
    for line in table.strip().splitlines():
        term, code, meaning = line.split(" ", 2)
        if code == "-":
            rows[term] = (None, None, meaning)
        elif code.startswith("C"):
            rows[term] = (UMLS, code, meaning)
        else:
            rows[term] = (SNOMED, code, meaning)
    return rows


#: Defined term -> (system, code, meaning); system/code None where Annex L has no code.
BODY_PARTS: dict[str, tuple[str | None, str | None, str]] = _parse(_TABLE)


def body_part_coding(term: str) -> dict[str, Any]:
    """FHIR Coding for a BodyPartExamined (0018,0015) value.

    A defined term of Annex L gives its SNOMED CT code; any other term (local values such
    as ``"L SPINE"``) gives a Coding with ``display`` only, so nothing is invented.
    """
    row = BODY_PARTS.get(term.strip().upper())
    if row is None:
        return {"display": term.strip()}
    system, code, meaning = row
    if system is None:
        return {"display": meaning}
    return {"system": system, "code": code, "display": meaning}
