"""Classical computer vision for the ``offline`` preprocessing backends (CPU, no learned models):
template-anchored Lucas-Kanade tracking (:mod:`.lk`, :mod:`.patches`, :mod:`.queries`), motion
segmentation (:mod:`.motionseg`), depth-map import (:mod:`.depth_io`) and keypoints from
clustered tracks (:mod:`.keypoints`)."""
