/* segment_app.h - the U-Net front ends: `train --task segment` and `evaluate` of a U-Net
 * (the `segment` command itself is sd_cmd_segment in app.h). */
#ifndef STEMDEFECT_SEGMENT_APP_H
#define STEMDEFECT_SEGMENT_APP_H

#include <hdf5.h>

#include "app.h"
#include "stemdefect/train.h"

/* Collective: `train --task segment` (segmenter section; the train command's --data,
 * --output, --epochs, --batch, --lr, --seed, --resume, --checkpoint flags override the
 * segmenter keys of the same name). */
sd_status sd_segment_train_run(sd_app *app);

/* Collective: `evaluate` of a U-Net model: per-class IoU, mean IoU, pixel precision/recall
 * against /masks; heatmap-mass criteria against image labels. */
sd_status sd_segment_evaluate_run(sd_app *app);

/* Collective: 1 in *is_unet when the model file's task is "segment" (opening errors are
 * returned, naming the file). */
sd_status sd_segment_model_is_unet(MPI_Comm comm, const char *path, int *is_unet);

/* The config key actually used for segmenter option `name`: "classifier.<name>" when the
 * train/evaluate command line set it with its flag, else "segmenter.<name>". buf: 64 bytes. */
const char *sd_segment_key(const sd_config *cfg, const char *name, char *buf);

/* Collective: opens path (*f) and its /deviation (*ds, with the dataset access list dapl) and
 * checks it is [n,h,w]; *has = 0 and SD_OK when the file has no /deviation and need == 0,
 * an error naming the file when need == 1 or the shape differs. The caller closes *ds, *f. */
sd_status sd_segment_open_deviation(MPI_Comm comm, const char *path, int64_t n, int h, int w,
                                    int need, hid_t dapl, hid_t *f, hid_t *ds, int *has);

/* The error of a two-channel U-Net run without --deviation (model, data: their paths). */
sd_status sd_segment_need_deviation(const char *model, const char *data);

/* Collective: *has = 1 when path has /deviation float [N,H,W] matching the stack (a
 * /deviation of another shape is an error naming both shapes). */
sd_status sd_segment_has_deviation(MPI_Comm comm, const char *path, const sd_stack_info *in,
                                   int *has);

/* Collective: turns the one-channel data d (loaded by sd_train_data_load from the stack in)
 * into two channels per image: the image, then its row of path:/deviation (the stack index
 * d->index[i]). Errors name the file and what was expected. */
sd_status sd_segment_attach_deviation(MPI_Comm comm, const char *path, const sd_stack_info *in,
                                      sd_train_data *d);

#endif
