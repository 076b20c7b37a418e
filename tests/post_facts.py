"""Token ids the post (大模型预训练代码实战) prints: records 0 and 1 + eos, padded with [PAD]."""

RECORD_0_IDS = [
    112720, 89012, 99459, 122157, 61443, 108462, 100045, 5122, 99459, 122157, 99457, 99244,
    3837, 36589, 99180, 115449, 8997, 100531, 35727, 22418, 50509, 3837, 99577, 99884, 99907,
    109564, 1773, 99425, 120827, 103073, 103610, 3837, 99208, 79599, 100875, 99964, 8997,
    16530, 102683, 16530, 103020, 3837, 48738, 102744, 102635, 100619, 1773, 151643,
]
RECORD_1_IDS = [
    112720, 89012, 113735, 106980, 61443, 108462, 100045, 5122, 102461, 55135, 21287, 99465,
    44729, 3837, 99718, 15946, 100066, 100167, 105401, 1773, 100697, 100956, 99349, 77540,
    99980, 3837, 114216, 20412, 105686, 11319, 151643,
]
EOS_ID = 151643
PAD_ID = 151665  # "[PAD]" added to the tokenizer

# The post's training run: its TrainingArguments set these two numbers (besides output_dir,
# save_safetensors=True and logging_strategy="epoch"); learning rate, schedule, warm-up and
# weight decay are left at transformers' defaults.
POST_TRAINING_ARGUMENTS = {"num_train_epochs": 10, "per_device_train_batch_size": 2}
# The post's closing inference, with the pretraining model only (it shows no SFT inference).
POST_INFERENCE_PROMPT = "请你给哪吒写一首诗："
POST_INFERENCE_OUTPUT = "哪吒降世，意气飞扬。\n逆天改命，破障冲霄。红绫缠腕，风火踏浪。\n不屈不悔，笑傲苍茫。"
