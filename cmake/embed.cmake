# Turns the text file IN into a C source OUT defining sd_defaults_yaml (NUL-terminated).
file(READ ${IN} content HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${content}")
get_filename_component(dir ${OUT} DIRECTORY)
file(MAKE_DIRECTORY ${dir})
file(WRITE ${OUT} "/* generated from config/defaults.yaml - do not edit */\nconst char sd_defaults_yaml[] = {${bytes}0x00};\n")
