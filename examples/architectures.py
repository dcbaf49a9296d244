"""Three small functional Keras CNNs of the kinds users prune: a VGG-style stack, a ResNet with
projection shortcuts (its block outputs are coupled through the residual adds), and
MobileNetV2-style inverted residuals (depthwise convs, ReLU6, linear bottlenecks).

Nothing here knows about pruning: they are plain Keras models with a batch norm after every
conv, which is all `cifar10_prune.pruning` needs.
"""
import keras
from keras import layers


def _conv_bn(x, filters, name, kernel=3, strides=1, activation="relu"):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False,
                      name=name)(x)
    x = layers.BatchNormalization(name=name + "_bn")(x)
    if activation == "relu":
        x = layers.ReLU(name=name + "_relu")(x)
    elif activation == "relu6":
        x = layers.ReLU(6.0, name=name + "_relu6")(x)
    return x


def vgg(input_shape=(32, 32, 3), num_classes=10, widths=(32, 64, 128)):
    """Two conv-BN-ReLU per stage, max pooling between stages, global pooling, a dense head."""
    images = keras.Input(input_shape, name="images")
    x = images
    for stage, width in enumerate(widths, start=1):
        x = _conv_bn(x, width, "s%dc1" % stage)
        x = _conv_bn(x, width, "s%dc2" % stage)
        x = layers.MaxPooling2D(2, name="s%d_pool" % stage)(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(images, layers.Dense(num_classes, name="logits")(x), name="vgg")


def resnet(input_shape=(32, 32, 3), num_classes=10, widths=(16, 32, 64), blocks=2):
    """Basic residual blocks; the first block of every stage after the first downsamples and
    has a 1x1 projection shortcut, so each stage's block outputs form one coupled group."""
    images = keras.Input(input_shape, name="images")
    x = _conv_bn(images, widths[0], "stem")
    for stage, width in enumerate(widths, start=1):
        for block in range(blocks):
            name = "s%db%d" % (stage, block)
            strides = 2 if stage > 1 and block == 0 else 1
            h = _conv_bn(x, width, name + "c1", strides=strides)
            h = _conv_bn(h, width, name + "c2", activation=None)
            shortcut = x
            if strides != 1 or x.shape[-1] != width:
                shortcut = _conv_bn(x, width, name + "proj", kernel=1, strides=strides,
                                    activation=None)
            x = layers.Add(name=name + "_add")([shortcut, h])
            x = layers.ReLU(name=name + "_relu")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(images, layers.Dense(num_classes, name="logits")(x), name="resnet")


def mobilenet_v2(input_shape=(32, 32, 3), num_classes=10,
                 blocks=((16, 1, 1), (24, 2, 6), (24, 1, 6), (32, 2, 6), (32, 1, 6))):
    """Inverted residual blocks (width, stride, expansion): 1x1 expand, 3x3 depthwise, 1x1
    linear project; a block with stride 1 and equal widths adds its input."""
    images = keras.Input(input_shape, name="images")
    x = _conv_bn(images, 16, "stem", activation="relu6")
    for i, (width, strides, expansion) in enumerate(blocks):
        name = "b%d" % i
        h = x
        if expansion != 1:
            h = _conv_bn(h, x.shape[-1] * expansion, name + "expand", kernel=1,
                         activation="relu6")
        h = layers.DepthwiseConv2D(3, strides=strides, padding="same", use_bias=False,
                                   name=name + "dw")(h)
        h = layers.BatchNormalization(name=name + "dw_bn")(h)
        h = layers.ReLU(6.0, name=name + "dw_relu6")(h)
        h = _conv_bn(h, width, name + "project", kernel=1, activation=None)
        if strides == 1 and x.shape[-1] == width:
            h = layers.Add(name=name + "_add")([x, h])
        x = h
    x = _conv_bn(x, 128, "head", kernel=1, activation="relu6")
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return keras.Model(images, layers.Dense(num_classes, name="logits")(x), name="mobilenet_v2")


ARCHITECTURES = {"vgg": vgg, "resnet": resnet, "mobilenet_v2": mobilenet_v2}
